"""Benchmark: drain a journal backlog to a local HTTP receiver and a local JetStream.

Next to each drain, a bare sender pushes the same pre-built batches (same bodies, same batch
sizes) over the same client library in the same run, so the figure that matters is the ratio.
The gateway side runs pinned to core 0 (``taskset``-style, via sched_setaffinity); the receiver
and nats-server run on core 1. RSS of this process is sampled during each drain.

    python bench/sync.py --events 200000            # 1,000,000 by default
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "sync")]

import httpx  # noqa: E402
import nats  # noqa: E402
from nats.js.api import StreamConfig  # noqa: E402

from edge.broker import free_port  # noqa: E402
from edge.bus import Source  # noqa: E402
from edge.events import parse_event  # noqa: E402
from edge.journal import Journal  # noqa: E402
from sync import MIGRATIONS  # noqa: E402
from sync.config import HttpSinkConfig, NatsSinkConfig, SyncConfig  # noqa: E402
from sync.http_sink import HttpSink, batch_body, iso_now  # noqa: E402
from sync.metrics import SyncMetrics  # noqa: E402
from sync.nats_sink import JetStreamSink  # noqa: E402
from sync.outbox import Outbox  # noqa: E402

SOURCE = Source("bench", "kiosk-1", "kiosk", "mqtt")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mib())
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        s = self.samples or [0.0]
        return f"RSS start {s[0]:.0f} MiB, max {max(s):.0f} MiB, end {s[-1]:.0f} MiB"


def build_journal(path: Path, n: int) -> None:
    """n consented ``Product Viewed`` events (~330 bytes), built directly as validated events."""
    template = parse_event(
        {"type": "track", "event": "Product Viewed", "messageId": "b-0", "userId": "ct_" + "0" * 32,
         "properties": {"sku": "sku-1", "price": 9.99},
         "context": {"consent": {"categoryPreferences": {"cdp_sync": True}}}},
        SOURCE, 1_790_000_000_000,
    )  # fmt: skip
    t0 = time.perf_counter()
    with Journal(path, synchronous="normal", migrations=MIGRATIONS) as journal:
        for start in range(0, n, 5000):
            chunk = []
            for i in range(start, min(n, start + 5000)):
                user = f"ct_{i % 5000:032x}"
                body = {**template.body, "messageId": f"b-{i:09d}", "userId": user,
                        "properties": {"sku": f"sku-{i % 997}", "price": 9.99}}  # fmt: skip
                chunk.append(replace(template, message_id=body["messageId"], user_id=user, body=body))
            journal.commit(chunk)
    print(f"built a journal of {n:,} events in {time.perf_counter() - t0:.1f} s")


def wait_port(port: int, timeout: float = 15) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def batches(journal: Journal, config: SyncConfig, box: Outbox) -> list[list[tuple[str, str]]]:
    """The exact batches the outbox would send: [(messageId, body)]."""
    out, after = [], 0
    while True:
        records = journal.read_after("bare", limit=config.batch_events, max_bytes=box.max_read_bytes, after=after)
        if not records:
            return out
        out.append([(r.message_id, r.body) for r in records])
        after = records[-1].seq


async def bare_http(url: str, prebuilt: list[bytes]) -> float:
    async with httpx.AsyncClient(base_url=url, auth=httpx.BasicAuth("bench", ""), timeout=30) as client:
        t0 = time.perf_counter()
        for body in prebuilt:
            r = await client.post(
                "/v1/batch", content=body, headers={"content-encoding": "gzip", "content-type": "application/json"}
            )
            r.raise_for_status()
        return time.perf_counter() - t0


async def bare_nats(url: str, prebuilt: list[list[tuple[str, bytes]]], run: int) -> float:
    """The library's own async publish with the same ids, into a fresh stream per run."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    subject = f"bare{run}.bench"
    await js.add_stream(StreamConfig(name=f"BARE{run}", subjects=[f"bare{run}.>"], duplicate_window=3600))
    t0 = time.perf_counter()
    for batch in prebuilt:
        futures = [await js.publish_async(subject, body, headers={"Nats-Msg-Id": mid})
                   for mid, body in batch]  # fmt: skip
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


def bare_child(kind: str, journal: Path, url: str, run: int) -> float:
    """Seconds the bare sender (a child on this core) took to push the pre-built batches."""
    out = subprocess.run([sys.executable, __file__, "--bare", kind, "--journal", str(journal),
                          "--url", url, "--run", str(run)],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def bare_main(kind: str, journal_path: Path, url: str, run: int) -> None:
    config = SyncConfig()
    with Journal(journal_path, migrations=MIGRATIONS) as journal:
        box = Outbox(journal, config, lambda u: True, SyncMetrics())
        prebuilt = batches(journal, config, box)
    if kind == "nats":
        print(asyncio.run(bare_nats(url, [[(m, b.encode()) for m, b in batch] for batch in prebuilt], run)))
    else:
        from sync.sink import OutboundEvent

        bodies = [gzip.compress(batch_body([OutboundEvent(0, m, b) for m, b in batch], iso_now()),
                                compresslevel=1) for batch in prebuilt]  # fmt: skip
        print(asyncio.run(bare_http(url, bodies)))


async def drain(box: Outbox, sink_factory) -> float:
    t0 = time.perf_counter()
    async with sink_factory() as sink:
        await box.drain(sink)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--bare", choices=["nats", "http"], help=argparse.SUPPRESS)
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare_main(args.bare, args.journal, args.url, args.run)
        return
    n = args.events
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        nats_port, http_port = free_port(), free_port()
        taskset = ["taskset", "-c", "1"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
        (tmp / "js").mkdir()
        procs.append(subprocess.Popen([*taskset, shutil.which("nats-server") or "/usr/sbin/nats-server",
                                       "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(tmp / "js")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        procs.append(subprocess.Popen([*taskset, sys.executable, str(ROOT / "tests/sync/sync_receiver.py"),
                                       "--port", str(http_port), "--db", str(tmp / "recv.db"),
                                       "--write-key", "bench"], stdout=subprocess.DEVNULL))  # fmt: skip
        wait_port(nats_port)
        wait_port(http_port)
        time.sleep(0.5)
        path = tmp / "journal.db"
        build_journal(path, n)
        config = SyncConfig()
        results = {}
        with Journal(path, synchronous="normal", migrations=MIGRATIONS) as journal:
            box = Outbox(journal, config, lambda u: True, SyncMetrics())
            # bare, outbox, bare again (the machine's load drifts, so the baseline brackets the
            # drain); the bare sender runs in a child on the same core so this process's RSS is
            # the outbox's alone
            nats_url = f"nats://127.0.0.1:{nats_port}"
            bare_js = [bare_child("nats", path, nats_url, 1)]
            nats_cfg = NatsSinkConfig(enabled=True, servers=[nats_url], ack_timeout_s=30)
            with RssSampler() as rss_js:
                gw_js = asyncio.run(drain(box, lambda: JetStreamSink(nats_cfg, "bench")))
            bare_js.append(bare_child("nats", path, nats_url, 2))
            results["JetStream"] = (gw_js, bare_js, rss_js.summary())
            if not args.skip_http:
                http_url = f"http://127.0.0.1:{http_port}"
                bare_h = [bare_child("http", path, http_url, 1)]
                http_cfg = HttpSinkConfig(enabled=True, base_url=http_url, write_key="bench")
                with RssSampler() as rss_h:
                    gw_h = asyncio.run(drain(box, lambda: HttpSink(http_cfg)))
                bare_h.append(bare_child("http", path, http_url, 2))
                results["HTTP"] = (gw_h, bare_h, rss_h.summary())
        print(f"\nsync drain of {n:,} events, gateway pinned to core 0, receivers on core 1")
        print(f"{'sink':<10} {'outbox ev/s':>12} {'bare ev/s (before/after)':>26} {'ratio':>6}"
              "  memory during the drain")  # fmt: skip
        for name, (gw, bares, rss) in results.items():
            bare = sum(bares) / len(bares)
            runs = "/".join(f"{n / b:,.0f}" for b in bares)
            print(f"{name:<10} {n / gw:>12,.0f} {runs:>26} {bare / gw:>6.0%}  {rss}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
