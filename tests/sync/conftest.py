"""Service fixtures of the sync tests: our own nats-server(s), PostgreSQL and batch receiver.

Each starts on 127.0.0.1 on a free port in a tmp dir, waits until ready, and is stopped by PID.
A NATS on 4222 or a PostgreSQL on 5432 that may run on the machine is never used.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from support.services import free_port, require_program, wait_for_port

from sync.config import CentralConfig
from sync.identities import FleetIdentities

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RECEIVER = Path(__file__).with_name("sync_receiver.py")
ROOT = Path(__file__).resolve().parents[2]


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
    directory: Path, count: int, *, fleet: FleetIdentities | None = None, backbone: bool = True,
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


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[Nats]:
    """One node with the centre's backbone (1 replica), consumers for stores s1 and s2."""
    with running_nats(tmp_path / "nats", 1) as nats:
        yield nats


@pytest.fixture
def bare_nats_server(tmp_path: Path) -> Iterator[Nats]:
    """One node on which the centre has created nothing."""
    with running_nats(tmp_path / "nats", 1, backbone=False) as nats:
        yield nats


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[Nats]:
    """Three clustered nodes with the backbone at 3 replicas."""
    with running_nats(tmp_path / "cluster", 3) as nats:
        yield nats


@pytest.fixture
def fleet(tmp_path: Path) -> FleetIdentities:
    """A fleet directory with identities for stores s1 and s2 (`edge central identities`)."""
    identities = FleetIdentities(tmp_path / "fleet")
    identities.add(["s1", "s2"])
    return identities


@pytest.fixture
def secured_nats(tmp_path: Path, fleet: FleetIdentities) -> Iterator[Nats]:
    """One node that admits only the fleet's identities, with the backbone."""
    with running_nats(tmp_path / "secured", 1, fleet=fleet) as nats:
        yield nats


# -- PostgreSQL ------------------------------------------------------------------------------
def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("no 'postgres' system user: apt-get install postgresql-15")


def _as_postgres(argv: list[str]) -> list[str]:
    """As the postgres user when we are root. setpriv execs (no fork), so the PID we hold is
    the postmaster's own and our signals reach it."""
    if os.geteuid() != 0:
        return argv  # already unprivileged: run as ourselves
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run PostgreSQL as the postgres user")
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


@contextmanager
def running_postgres() -> Iterator[str]:
    """A PostgreSQL 15 on 127.0.0.1 in a temporary directory; yields the DSN of ``postgres``."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {PG_BIN}: install postgresql-15")
    user = _postgres_user()
    tmp = Path(tempfile.mkdtemp(prefix="sync-pg-"))
    data, sockets = tmp / "data", tmp / "sock"
    sockets.mkdir()
    os.chmod(tmp, 0o755)
    if os.geteuid() == 0:
        for path in (tmp, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    log = open(tmp / "postgres.log", "ab")
    process = subprocess.Popen(
        _as_postgres([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                      "-k", str(sockets),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                      "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    try:
        wait_for_port(port, proc=process)
        import psycopg

        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(dsn).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield dsn
    finally:
        stop(process, signal.SIGINT)  # fast shutdown
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 for the session; yields the DSN of its ``postgres`` database."""
    with running_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres(postgres_server: str) -> Iterator[str]:
    """A fresh database per test; yields its DSN."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


# -- the Segment-compatible receiver ---------------------------------------------------------
@dataclass
class ReceiverHandle:
    url: str
    db: Path
    write_key: str
    process: subprocess.Popen[bytes]

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_stats").json())

    def control(self, **values: object) -> None:
        httpx.post(f"{self.url}/_control", json=values).raise_for_status()

    def received_ids(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.db) as conn:
            return [r[0] for r in conn.execute("SELECT message_id FROM receipts")]


def start_receiver(
    directory: Path, write_key: str = "test-key", cpu: int | None = None
) -> ReceiverHandle:
    port = free_port()
    db = directory / f"receiver-{port}.db"
    argv = [sys.executable, str(RECEIVER), "--port", str(port), "--db", str(db),
            "--write-key", write_key]  # fmt: skip
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    with open(directory / f"receiver-{port}.log", "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    wait_for_port(port, proc=process)
    return ReceiverHandle(f"http://127.0.0.1:{port}", db, write_key, process)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverHandle]:
    handle = start_receiver(tmp_path)
    try:
        yield handle
    finally:
        stop(handle.process)
