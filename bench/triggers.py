"""Triggers benchmark: 200 triggers on the live stream, against the same ingest without them.

    run:  .venv/bin/python bench/triggers.py [--rate 2000] [--seconds 10] [--events 40000]

The gateway's own parts, in this process: the journal (SQLite, WAL, group commit), the ingest
pipeline (validation, identifier guard, writer thread, post-commit listeners) and the triggers
component (its journal listener, evaluator, contact policy, arms, fixed-offer content, the
OfferPublisher, batched firing rows). The MQTT link is replaced by a publisher that records the
instant ``publish()`` is called (the link's publish only enqueues to paho).

1. Ingest throughput: N events as fast as the pipeline takes them, without the triggers
   component, then with it (200 triggers), alternated twice; ratio with/without (target ≥ 0.80).
2. Latency at a paced rate (default 2,000 events/s, 5 % matching a trigger): signal committed
   (the journal listener is called) → offer published on the touch point's topic, p50/p99
   (target p99 ≤ 50 ms on one core; the script pins itself to one core when it can).
3. Memory: tracemalloc of the evaluator's state for 10,000 live visits, each with a pending
   sequence (an absence timer) — bytes per 10,000 visits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

import edge.registry  # noqa: E402
from devices.sim.triggers import make_event  # noqa: E402
from edge.bus import Source  # noqa: E402
from edge.component import GatewayContext  # noqa: E402
from edge.config import parse_config  # noqa: E402
from edge.ingest import Ingestor  # noqa: E402
from edge.journal import Journal  # noqa: E402
from edge.metrics import IngestMetrics  # noqa: E402
from edge.triggers import CONFIG_SECTIONS, MIGRATIONS, build  # noqa: E402
from edge.triggers.library import load_library  # noqa: E402

ZONES = [f"z{i}" for i in range(20)]


def library_text(n: int = 200) -> str:
    """n triggers: event triggers with property conditions, sequences, dwells, complements."""
    out = ["[touchpoints]", 'kiosk = "kiosk-1"', 'pos = "pos-1"', "[policy]", "max_per_visit = 3"]
    for z in ZONES:
        out += [f"[touchpoints.zones.{z}]", f'display = "display-{z}"', f'tablet = "tablet-{z}"']
    for i in range(n):
        kind = i % 10
        zone = ZONES[i % len(ZONES)]
        head = ["[[triggers]]", f'id = "t{i:03d}"', "version = 1", 'audience = "anonymous"', "holdout = 0.15"]
        if kind < 6:  # 120 event triggers: a zone and a SKU range
            sig = (
                f'signal = {{ kind = "event", event = "Product Viewed", where = {{ "properties.zoneId" = "{zone}",'
                f' "properties.price" = {{ gte = {i % 7} }}, channel = "kiosk" }} }}'
            )
            act = 'action = { touchpoint = "display", content = "fixed" }'
        elif kind < 8:  # 40 sequences: viewed, not added within 10 min
            sig = (
                f'signal = {{ kind = "sequence", event = "Product Viewed", then_not = "Product Added", same = "sku",'
                f' within_minutes = 10, where = {{ "properties.zoneId" = "{zone}" }} }}'
            )
            act = 'action = { touchpoint = "kiosk", content = "fixed" }'
        elif kind == 8:  # 20 dwells
            sig = f'signal = {{ kind = "dwell", zone = "{zone}", minutes = 3 }}'
            act = 'action = { touchpoint = "display", content = "fixed" }'
        else:  # 20 basket complements
            sig = 'signal = { kind = "complement", where = { channel = "pos" } }'
            act = 'action = { touchpoint = "pos", content = "fixed" }'
        out += [
            *head,
            sig,
            act,
            "contact = { per_unit_day = 2, per_visit = 1 }",
            "[[triggers.variants]]",
            'id = "a"',
            f'offer = {{ offerId = "o{i}a", title = "A {i}" }}',
            "[[triggers.variants]]",
            'id = "b"',
            f'offer = {{ offerId = "o{i}b", title = "B {i}" }}',
        ]
    return "\n".join(out) + "\n"


class Recorder:
    """The MQTT link's place: records when each offer was handed over for publishing."""

    def __init__(self) -> None:
        self.count = 0

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.count += 1


MATCH_EVERY = 20  # one event in N is in a zone with triggers (--match sets it)


def _event(i: int, matching: bool, visits: int) -> dict[str, Any]:
    zone = ZONES[(i // MATCH_EVERY) % len(ZONES)] if matching else "elsewhere"
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"bench-{i}",
        "anonymousId": f"visit-{i % visits}",
        "properties": {"sku": f"SKU{i % 5000:05d}", "zoneId": zone, "price": float(i % 9)},
    }


class Rig:
    def __init__(self, tmp: Path, with_triggers: bool, library: Path) -> None:
        self.journal = Journal(
            tmp / "journal.db", synchronous="normal", migrations=(*MIGRATIONS, *edge.registry.MIGRATIONS)
        )
        self.registry = CollectorRegistry()
        self.ingestor = Ingestor(self.journal, IngestMetrics(self.registry), max_batch=2000, linger_ms=1.0)
        self.component = None
        self.committed: dict[str, int] = {}
        if with_triggers:
            config = parse_config({"triggers": {"path": str(library)}}, CONFIG_SECTIONS, {})
            ctx = GatewayContext(
                config=config,
                state_dir=tmp,
                journal=self.journal,
                bus=self.ingestor,
                publisher=Recorder(),
                metrics=self.registry,
                clock=time.time,
                store_id="b",
            )
            self.component = build(ctx)
            self.ingestor.attach(self.component)
        self.ingestor.start()

    async def __aenter__(self) -> Rig:
        if self.component is not None:
            self.task = asyncio.create_task(self.component.run())
            while self.component._queue is None:
                await asyncio.sleep(0.001)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.component is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.ingestor.stop()
        self.journal.close()


SOURCE = Source("b", "kiosk-1", "kiosk", "mqtt")


async def throughput(tmp: Path, with_triggers: bool, library: Path, n: int, tag: str) -> float:
    async with Rig(tmp / tag, with_triggers, library) as rig:
        batch = 50
        start = time.perf_counter()
        cpu = time.process_time()
        pending = []
        for j in range(0, n, batch):
            events = [
                _event(i, i % MATCH_EVERY == 0, 10_000) | {"messageId": f"{tag}-{i}"}
                for i in range(j, min(n, j + batch))
            ]
            pending.append(asyncio.create_task(rig.ingestor.publish(SOURCE, events)))
            if len(pending) >= 40:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        if rig.component is not None:  # the triggers kept up: their queue is empty
            while not rig.component._queue.empty():
                await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
        return n / elapsed, n / (time.process_time() - cpu)


async def latency(tmp: Path, library: Path, rate: float, seconds: float) -> tuple[list[float], int, int]:
    async with Rig(tmp / "latency", True, library) as rig:
        comp = rig.component
        commit_ns: dict[str, int] = {}
        listen = comp._listen

        def timed(events: Any) -> None:
            now = time.perf_counter_ns()
            for e in events:
                commit_ns[e.message_id] = now
            listen(events)

        rig.ingestor.listeners[rig.ingestor.listeners.index(listen)] = timed
        latencies: list[float] = []
        published = [0]
        orig_publish = comp.publisher.publish

        def publish(kind: str, device: str, payload: Any, **kw: Any) -> str:
            topic = orig_publish(kind, device, payload, **kw)
            published[0] = time.perf_counter_ns()  # handed to the MQTT link
            return topic

        comp.publisher.publish = publish  # type: ignore[method-assign]
        orig_fire = comp.runtime.fire

        async def fire(cand: Any, now_ms: int) -> Any:
            published[0] = 0
            f = await orig_fire(cand, now_ms)
            mid = cand.key.split(":", 1)[1]
            if f is not None and f.topic and published[0] and mid in commit_ns:
                latencies.append((published[0] - commit_ns[mid]) / 1e6)
            return f

        comp.runtime.fire = fire  # type: ignore[method-assign]
        step = 0.01
        per_step = max(1, int(rate * step))
        n = int(rate * seconds)
        start = time.perf_counter()
        i = 0
        tasks = []
        while i < n:
            target = start + (i / per_step) * step
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            events = [
                _event(k, k % MATCH_EVERY == 0, 50_000) | {"messageId": f"lat-{k}"}
                for k in range(i, min(n, i + per_step))
            ]
            tasks.append(asyncio.create_task(rig.ingestor.publish(SOURCE, events)))
            i += per_step
        await asyncio.gather(*tasks)
        await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - start
        return latencies, n, int(n / elapsed)


def memory_per_10k(library: Path) -> tuple[int, int]:
    class Catalog:
        def category_of(self, sku: str) -> str | None:
            return f"c{int(sku[3:]) % 9}"

        def price_of(self, sku: str) -> float:
            return 1.0

    class Consent:
        def allows(self, user_id: str | None, purpose: str) -> bool:
            return False

        def is_suppressed(self, user_id: str | None) -> bool:
            return False

    from edge.triggers.evaluator import Evaluator

    lib = load_library(library)
    ev = Evaluator(lib, consent=Consent(), catalog=Catalog())
    events = [
        make_event(
            "Product Viewed",
            1_767_600_000_000 + i,
            anonymous_id=f"visit-{i}",
            properties={"sku": f"SKU{i % 5000:05d}", "zoneId": ZONES[i % len(ZONES)], "price": 3.0},
        )
        for i in range(10_000)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ev.observe(events)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return size, ev.pending


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s for the latency run")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the latency run")
    ap.add_argument("--events", type=int, default=40_000, help="events per throughput run")
    ap.add_argument(
        "--match",
        type=float,
        default=0.05,
        help="share of events in a zone that has triggers (each such event matches that zone's 10 triggers)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin this process to one core (a Pi core's stand-in;"
        " leave off on a loaded shared machine, where the CPU-time ratio is the figure to read)",
    )
    args = ap.parse_args()
    global MATCH_EVERY
    MATCH_EVERY = max(1, round(1 / args.match))
    if args.pin and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        library = tmp / "library.toml"
        library.write_text(library_text(200))
        assert len(load_library(library).triggers) == 200

        async def go() -> dict[str, Any]:
            rates: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
            for r in range(2):
                for mode in ("without", "with"):
                    rates[mode].append(await throughput(tmp, mode == "with", library, args.events, f"{mode}{r}"))
            lat, n, achieved = await latency(tmp, library, args.rate, args.seconds)
            return {"rates": rates, "lat": lat, "n": n, "achieved": achieved}

        out = asyncio.run(go())
        mem, pending = memory_per_10k(library)
    for i, what in ((0, "wall clock"), (1, "CPU time (events per CPU-second: the shared-machine-proof figure)")):
        without = statistics.median(r[i] for r in out["rates"]["without"])
        with_t = statistics.median(r[i] for r in out["rates"]["with"])
        runs_wo = ", ".join(f"{r[i]:,.0f}" for r in out["rates"]["without"])
        runs_w = ", ".join(f"{r[i]:,.0f}" for r in out["rates"]["with"])
        print(
            f"ingest throughput, {what}: without triggers {without:,.0f} events/s ({runs_wo}); with 200 triggers"
            f" {with_t:,.0f} events/s ({runs_w}); ratio with/without {with_t / without:.2f} (target >= 0.80)"
        )
    lat = sorted(out["lat"])
    if lat:
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"signal committed -> offer published at {out['achieved']:,} events/s offered ({out['n']:,} events,"
            f" {len(lat):,} firings published): p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 <= 50 ms)"
        )
    print(
        f"workload: 200 triggers (120 event, 40 sequence, 20 dwell, 20 complement), 1 event in {MATCH_EVERY}"
        " in a zone with triggers"
    )
    print(
        f"memory: {mem / 1e6:.1f} MB for 10,000 live visits with {pending:,} pending timers"
        f" ({mem / 10_000:.0f} bytes a visit)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
