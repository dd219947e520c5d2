"""Our own nats-server(s) for the sync tests: one node or a cluster on 127.0.0.1 free ports,
optionally with the centre's identities and backbone; stopped by PID. A module of its own (not
conftest) so test modules can import it by a name no other test directory shares."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.services import free_port, require_program, wait_for_port

from sync.config import CentralConfig
from sync.identities import FleetIdentities


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- NATS ------------------------------------------------------------------------------------
@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    store_dir: Path
    conf: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = require_program("nats-server")
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        wait_for_port(self.port, proc=self.process)

    def kill(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@dataclass
class Nats:
    nodes: list[NatsNode] = field(default_factory=list)
    #: the centre's nkey seed when the hub requires identities (see the ``secured_*`` fixtures)
    central_credentials: str = ""

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def central_config(self, **changes: object) -> CentralConfig:
        # the test nodes have 2 GB of file store, the production default limit is 100 GiB
        base = CentralConfig(servers=self.urls, replicas=len(self.nodes),
                             credentials=self.central_credentials,
                             events_max_bytes=512 * 1024**2)  # fmt: skip
        return dataclasses.replace(base, **changes)

    def create_backbone(self, stores: Sequence[str] = ("s1", "s2"), **changes: object) -> list[str]:
        """What the centre does before any store connects (`edge central streams`)."""
        import asyncio

        from sync.backbone import ensure_backbone
        from sync.nats_sink import connect

        config = self.central_config(**changes)

        async def go() -> list[str]:
            import nats.js.errors

            nc = await connect(self.urls, config.credentials, name="test-centre")
            try:
                for _ in range(100):  # a young cluster may not know all its peers yet
                    try:
                        return await ensure_backbone(nc.jetstream(timeout=30), config, stores)
                    except nats.js.errors.BadRequestError as exc:
                        if exc.err_code != 10005:  # no suitable peers for placement
                            raise
                        await asyncio.sleep(0.2)
                raise TimeoutError("the cluster never had enough peers for the backbone")
            finally:
                await nc.close()

        return asyncio.run(go())


def _nats_nodes(tmp: Path, count: int, extra: str = "") -> list[NatsNode]:
    ports = [(free_port(), free_port()) for _ in range(count)]
    nodes = []
    for i, (port, cport) in enumerate(ports):
        name = f"n{i}"
        store = tmp / name
        store.mkdir(parents=True)
        conf = tmp / f"{name}.conf"
        text = f'server_name: {name}\nlisten: "127.0.0.1:{port}"\n'
        text += f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB,'
        text += " max_file_store: 2GB }\n"
        text += "max_payload: 8MB\n" + extra
        if count > 1:
            others = [c for j, (_, c) in enumerate(ports) if j != i]
            routes = ", ".join(f'"nats-route://127.0.0.1:{c}"' for c in others)
            text += f'cluster {{ name: "cdp", listen: "127.0.0.1:{cport}", routes: [{routes}] }}\n'
        conf.write_text(text)
        nodes.append(NatsNode(name, port, cport, store, conf, tmp / f"{name}.log"))
    return nodes


def _wait_jetstream(urls: list[str], timeout: float = 30.0, seed: str = "") -> None:
    """Until a JetStream API call succeeds (a cluster needs a meta leader first)."""
    import asyncio

    import nats

    async def probe() -> bool:
        try:
            nc = await nats.connect(servers=urls, connect_timeout=1, allow_reconnect=False,
                                    **({"nkeys_seed": seed} if seed else {}))  # fmt: skip
        except Exception:
            return False
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(probe()):
            return
        time.sleep(0.2)
    raise TimeoutError(f"JetStream not ready on {urls} after {timeout} s")


@contextmanager
def running_nats(
    directory: Path,
    count: int,
    *,
    fleet: FleetIdentities | None = None,
    backbone: bool = True,
    stores: Sequence[str] = ("s1", "s2"),
) -> Iterator[Nats]:
    """``count`` nodes (a cluster when > 1); with ``fleet`` every client needs an identity;
    with ``backbone`` the centre's streams and consumers exist before the test starts."""
    # nats-server resolves an include relative to the including file
    extra = f'include "{os.path.relpath(fleet.auth_conf, directory)}"\n' if fleet is not None else ""
    seed = str(fleet.central_seed) if fleet is not None else ""
    nats = Nats(_nats_nodes(directory, count, extra), central_credentials=seed)
    try:
        for node in nats.nodes:
            node.start()
        _wait_jetstream(nats.urls, seed=seed)
        if backbone:
            nats.create_backbone(stores)
        yield nats
    finally:
        for node in nats.nodes:
            node.stop()
