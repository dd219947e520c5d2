"""Store attachment under a WAN cut: the outbox straight to the hub vs a NATS leaf node on the box.

Both on 127.0.0.1, with a TCP relay standing in for the store's WAN link (cut = every relayed
connection closed and new ones refused; heal = relaying again):

* **direct** — the store's Outbox + JetStreamSink publish to the hub's ``CDP_EVENTS`` through
  the relay (today's design);
* **leaf** — a nats-server on the box (JetStream domain ``s1``) is a leaf node of the hub
  through the relay; the Outbox publishes to a local stream ``STORE_EVENTS``
  (``cdp.events.s1``) and the hub's ``CDP_EVENTS`` *sources* it (external API
  ``$JS.s1.API``), as the NATS documentation recommends across domains.

The store journals up to ``--rate`` events/s for ``--seconds``; the WAN is cut after
``--cut-at`` s for ``--cut`` s. Printed per mode: events journaled in all and held by the hub at
the end (exactly once: the hub's count of distinct messages), events acknowledged to the outbox
during the cut, the largest unsent backlog in the store's journal, and the seconds from heal
until the hub holds every event journaled before the heal.

    python bench/attach.py                     # --rate 200 --seconds 30 --cut-at 5 --cut 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sync"), str(ROOT / "tests")]

import nats  # noqa: E402
from helpers import Source, Spec, make_event  # noqa: E402
from nats.js.api import ExternalStream, StreamConfig, StreamSource  # noqa: E402

from edge.broker import free_port, wait_for_port  # noqa: E402
from edge.journal import Journal  # noqa: E402
from sync import MIGRATIONS  # noqa: E402
from sync.config import NatsSinkConfig, SyncConfig  # noqa: E402
from sync.metrics import SyncMetrics  # noqa: E402
from sync.nats_sink import JetStreamSink  # noqa: E402
from sync.outbox import Outbox  # noqa: E402

SOURCE = Source("s1", "kiosk-1", "kiosk", "mqtt")


class Relay:
    """A TCP relay 127.0.0.1:port → 127.0.0.1:target that can be cut and healed."""

    def __init__(self, target: int, port: int) -> None:
        self.target, self.port = target, port
        self.up = True
        self._pairs: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._pairs |= {writer, up_writer}
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._pairs -= {writer, up_writer}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Relay]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        try:
            yield self
        finally:
            server.close()
            self.cut()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._pairs):
            writer.transport.abort()

    def heal(self) -> None:
        self.up = True


def nats_server(directory: Path, name: str, text: str, port: int) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / f"{name}.conf"
    conf.write_text(f'server_name: {name}\nlisten: "127.0.0.1:{port}"\n{text}')
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with open(directory / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, 15.0, proc)
    return proc


async def hub_count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        return int((await nc.jetstream().stream_info("CDP_EVENTS")).state.messages)
    finally:
        await nc.close()


async def scenario(mode: str, work: Path, args: argparse.Namespace) -> dict[str, object]:
    hub_port, leaf_listen, relay_port = free_port(), free_port(), free_port()
    # the hub tells leaf nodes where to reconnect: that must be the WAN relay, not its own port
    procs = [nats_server(work / mode, "hub", f'jetstream {{ domain: hub, store_dir: "{work / mode / "hub"}" }}\n'
                         f'leafnodes {{ listen: "127.0.0.1:{leaf_listen}", advertise: "127.0.0.1:{relay_port}" }}\n',
                         hub_port)]  # fmt: skip
    hub_url = f"nats://127.0.0.1:{hub_port}"
    relay = Relay(hub_port if mode == "direct" else leaf_listen, relay_port)
    try:
        async with relay.running():
            store_url = f"nats://127.0.0.1:{relay.port}"
            nc = await nats.connect(hub_url)
            hub = nc.jetstream()
            if mode == "direct":
                await hub.add_stream(StreamConfig(name="CDP_EVENTS", subjects=["cdp.events.>"], duplicate_window=3600))
            else:
                box_port = free_port()
                procs.append(nats_server(work / mode, "box", f'jetstream {{ domain: s1, store_dir: "{work / mode / "box"}" }}\n'
                                         f'leafnodes {{ remotes: [{{ url: "nats-leaf://127.0.0.1:{relay.port}" }}] }}\n',
                                         box_port))  # fmt: skip
                store_url = f"nats://127.0.0.1:{box_port}"
                box = await nats.connect(store_url)
                await box.jetstream().add_stream(StreamConfig(name="STORE_EVENTS", subjects=["cdp.events.s1"],
                                                              duplicate_window=3600))  # fmt: skip
                await box.close()
                await asyncio.sleep(1.0)  # the leaf connection
                await hub.add_stream(StreamConfig(name="CDP_EVENTS", duplicate_window=3600, sources=[
                    StreamSource(name="STORE_EVENTS", external=ExternalStream(api="$JS.s1.API"))]))  # fmt: skip
            await nc.close()
            with Journal(work / mode / "journal.db", synchronous="normal", migrations=MIGRATIONS) as journal:
                config = SyncConfig(batch_events=250, backoff_base_s=0.1, backoff_cap_s=1.0, idle_poll_s=0.05)
                box_sink = NatsSinkConfig(enabled=True, servers=[store_url], ack_timeout_s=2)
                outbox = Outbox(journal, config, lambda u: True, SyncMetrics())
                syncing = asyncio.create_task(outbox.run_sink("nats", lambda: JetStreamSink(box_sink, "s1")))
                produced, backlog_max, acked_in_cut, cursor_at_cut = 0, 0, 0, 0
                started = time.monotonic()
                cut_at, heal_at = started + args.cut_at, started + args.cut_at + args.cut
                cut = healed = False
                at_heal, caught_up, last_check, heal_time = 0, None, 0.0, 0.0
                while (now := time.monotonic()) < started + args.seconds:
                    if healed and caught_up is None and now - last_check > 0.25:
                        last_check = now
                        if await hub_count(hub_url) >= at_heal:
                            caught_up = now - heal_time
                    if not cut and now >= cut_at:
                        relay.cut()
                        cut, cursor_at_cut = True, journal.cursor("nats")
                        hub_at_cut = await hub_count(hub_url)
                    if cut and not healed and now >= heal_at:
                        acked_in_cut = journal.cursor("nats") - cursor_at_cut
                        hub_at_heal = await hub_count(hub_url)
                        relay.heal()
                        healed, heal_time, at_heal = True, now, produced
                    event = make_event(produced, Spec("Audience Measured", received_ms=int(time.time() * 1000)), SOURCE)
                    await asyncio.to_thread(journal.commit, [event])
                    produced += 1
                    backlog_max = max(backlog_max, journal.backlog("nats"))
                    await asyncio.sleep(1 / args.rate)
                deadline = time.monotonic() + 120
                while ((count := await hub_count(hub_url)) < produced or caught_up is None) \
                        and time.monotonic() < deadline:  # fmt: skip
                    if caught_up is None and count >= at_heal:
                        caught_up = time.monotonic() - heal_time
                    await asyncio.sleep(0.1)
                syncing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await syncing
        return {"mode": mode, "produced": produced, "hub": count, "acked_in_cut": acked_in_cut,
                "backlog_max": backlog_max, "hub_gain_in_cut": hub_at_heal - hub_at_cut,
                "caught_up_s": caught_up if caught_up is not None else float("nan")}  # fmt: skip
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="events/s journaled by the store")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the store journals")
    parser.add_argument("--cut-at", type=float, default=5.0, help="seconds before the WAN is cut")
    parser.add_argument("--cut", type=float, default=15.0, help="seconds the WAN stays cut")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-attach-"))
    print(f"{args.rate:.0f} ev/s for {args.seconds:.0f} s, WAN cut at {args.cut_at:.0f} s for {args.cut:.0f} s")
    print(
        "mode    journaled  at hub  reached hub in cut  acked during cut  max unsent in journal"
        "  hub has the cut's events"
    )
    for mode in ("direct", "leaf"):
        r = asyncio.run(scenario(mode, work, args))
        print(f"{r['mode']:<7} {r['produced']:>9}  {r['hub']:>6}  {r['hub_gain_in_cut']:>18}"
              f"  {r['acked_in_cut']:>16}  {r['backlog_max']:>21}"
              f"  {r['caught_up_s']:>6.1f} s after heal")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True) if not args.keep else print(f"kept {work}")


if __name__ == "__main__":
    main()
