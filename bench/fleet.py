"""Benchmark: 400 stores through a 3-node JetStream cluster into PostgreSQL, 1/2/4 workers.

Everything is started here on 127.0.0.1 (3 nats-servers admitting only the fleet's nkeys,
PostgreSQL 15); the stores are the fleet test's simulated stores (real journals, Outbox and
JetStreamSink with one identity each, in 4 processes); the workers are ``edge central run``
processes sharing the durable consumer.

1. **Load rate per worker count.** The stores publish a backlog of ``--backlog`` events into
   the stream; then 1, 2 and 4 workers load it (fresh database, the consumer reset to the first
   message each time): rows/s from the first to the last commit, and the scaling ratio.
   While they load, the CPU seconds per 1,000 rows of the workers, the three nats-servers and
   PostgreSQL and how busy the whole machine was (``/proc``): with the cores saturated, rows/s
   cannot grow with workers, and CPU per row shows whether workers cost each other anything.
2. **Bare parts.** The same rows (read back from the loaded table) are ``COPY``-ed into a plain
   table with the same columns, into one with the job's key and index, and into a partitioned
   table with them (the index cost, then the partition routing cost), in the same run: the job's rows/s as a share of each. And one plain nats-py client pulls the
   same backlog from the cluster and acks it (no PostgreSQL): the NATS side's bare rate.
3. **End-to-end lag.** With 2 workers running, the stores journal ``--rate`` events/s in all
   for ``--seconds`` s while syncing; lag = PostgreSQL commit − gateway ``receivedAt``, p50/p99.

    python bench/fleet.py                      # --backlog 40000 --rate 800 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "sync"), str(ROOT / "tests")]  # the sync conftest

import nats.js.errors  # noqa: E402
import psycopg  # noqa: E402
from conftest import running_nats, running_postgres, stop  # noqa: E402

from sync.backbone import EVENTS_STREAM, Backbone  # noqa: E402
from sync.central import CentralJob  # noqa: E402
from sync.config import CentralConfig  # noqa: E402
from sync.identities import FleetIdentities  # noqa: E402
from sync.nats_sink import connect  # noqa: E402

STORES, PROCESSES = 400, 4
FETCH_BATCH = 500  # central.fetch_batch of the workers (--fetch-batch)
COLUMNS = ("message_id, received_month, store_id, type, event, user_id, anonymous_id,"
           ' "timestamp", received_at, properties, context, body')  # fmt: skip


def run_stores(fleet: FleetIdentities, urls: list[str], work: Path, events: int, rate: float = 0,
               seconds: float = 0) -> int:  # fmt: skip
    """The simulated stores, until each is caught up; returns the events they let out."""
    procs, outs = [], []
    per = STORES // PROCESSES
    for p in range(PROCESSES):
        out = work / f"stores-{time.monotonic_ns()}-{p}" / "expected.txt"
        out.parent.mkdir(parents=True)
        argv = [sys.executable, str(ROOT / "tests" / "sync" / "fleet_stores.py"), str(fleet.root), ",".join(urls),
                str(p * per), str(per), str(events), "7", str(out)]  # fmt: skip
        if rate:
            argv += [str(rate / STORES), str(seconds)]
        with open(out.parent / "log", "ab") as log:
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
                                          env={**os.environ, "PYTHONPATH": str(ROOT)}))  # fmt: skip
        outs.append(out)
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit("a simulated store process failed; see its log under the work dir")
    return sum(len(o.read_text().split()) for o in outs)


def workers(n: int, toml: Path, work: Path) -> list[subprocess.Popen[bytes]]:
    code = "import sys; from edge.cli import main; sys.exit(main())"
    out = []
    for i in range(n):
        with open(work / f"worker-{n}-{i}.log", "ab") as log:
            out.append(subprocess.Popen([sys.executable, "-c", code, "central", "run", "--config", str(toml)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))  # fmt: skip
    return out


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return admin.replace("dbname=postgres", f"dbname={name}")


async def reset_consumer(urls: list[str], seed: str, config: CentralConfig, *, purge: bool = False) -> None:
    """The shared consumer back to the first message (or the stream emptied, with ``purge``)."""
    nc = await connect(urls, seed, name="bench-centre")
    try:
        js = nc.jetstream(timeout=30)
        if purge:
            await js.purge_stream(EVENTS_STREAM)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(EVENTS_STREAM, config.durable)
        await js.add_consumer(EVENTS_STREAM, Backbone(config).central_consumer())
    finally:
        await nc.close()


CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (plus its reaped children's with ``children``); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / CLK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK, sum(values) / CLK


@dataclass
class Cpu:
    """Where the CPU went while the workers loaded: per 1,000 rows, and how busy the machine was."""

    workers: list[int]
    nats: list[int]
    postmaster: int

    def sample(self) -> dict[str, float]:
        backends = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _ppid(d) == self.postmaster]
        busy, total = machine_cpu()
        return {"workers": sum(cpu_seconds(p) for p in self.workers),
                "nats": sum(cpu_seconds(p) for p in self.nats),
                "postgres": cpu_seconds(self.postmaster, children=True) + sum(cpu_seconds(p) for p in backends),
                "busy": busy, "total": total, "at": time.monotonic()}  # fmt: skip


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return -1


def postmaster_pid(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        data = conn.execute("SHOW data_directory").fetchone()[0]
    return int((Path(data) / "postmaster.pid").read_text().split()[0])


async def bare_fetch(urls: list[str], seed: str, config: CentralConfig, want: int) -> float:
    """msg/s of one plain nats-py client pulling the backlog from the shared consumer and
    acking each message (``fetch(fetch_batch)`` + ``ack``), nothing else: the NATS side's bare
    rate on this cluster, in this run."""
    await reset_consumer(urls, seed, config)
    nc = await connect(urls, seed, name="bench-bare-fetch")
    try:
        js = nc.jetstream(timeout=30)
        sub = await js.pull_subscribe_bind(config.durable, stream=EVENTS_STREAM)
        got, started = 0, time.perf_counter()
        while got < want:
            msgs = await sub.fetch(config.fetch_batch, timeout=5)
            for m in msgs:
                await m.ack()
            got += len(msgs)
        await nc.flush()
        return got / (time.perf_counter() - started)
    finally:
        await nc.close()


def wait_rows(dsn: str, want: int, timeout: float, cpu: Cpu | None = None) -> tuple[int, float, float, str]:
    """Until ``want`` rows are loaded: (rows, first commit, last commit) epoch seconds, and
    with ``cpu`` where the CPU went between the first rows seen and the last."""
    deadline = time.monotonic() + timeout
    start: tuple[int, dict[str, float]] | None = None
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            rows, first, last = conn.execute(
                "SELECT count(*), extract(epoch FROM min(loaded_at)), extract(epoch FROM max(loaded_at))"
                " FROM cdp_events"
            ).fetchone()
            if cpu is not None and start is None and rows:
                start = (rows, cpu.sample())
            if rows >= want or time.monotonic() > deadline:
                spent = ""
                if cpu is not None and start is not None and rows > start[0]:
                    end, per = cpu.sample(), 1000 / (rows - start[0])
                    d = {k: end[k] - start[1][k] for k in end}
                    spent = (
                        f"CPU s per 1,000 rows: workers {d['workers'] * per:.3f}, nats-servers"
                        f" {d['nats'] * per:.3f}, postgres {d['postgres'] * per:.3f};"
                        f" machine {d['busy'] / d['total']:.0%} busy ({os.cpu_count()} cores, other sessions included)"
                    )
                return int(rows), float(first or 0), float(last or 0), spent
            time.sleep(0.25)


def bare_copy(dsn: str) -> tuple[float, float, float]:
    """rows/s of one COPY of the loaded rows (a) into a plain table of the same columns, no
    key, no index; (b) into a plain table with the job's key and user index; (c) into a
    partitioned table with that key and index (what the job's INSERT … SELECT also maintains):
    (a)→(b) is the cost of the indexes, (b)→(c) of the partition routing."""
    with psycopg.connect(dsn) as conn:
        as_text = COLUMNS.replace("properties, context, body", "properties::text, context::text, body::text")
        rows = conn.execute(f"SELECT {as_text} FROM cdp_events").fetchall()
        months = [r[0] for r in conn.execute("SELECT DISTINCT received_month FROM cdp_events")]
        key = "PRIMARY KEY (message_id, received_month)"
        conn.execute("CREATE TABLE bare (LIKE cdp_events INCLUDING DEFAULTS)")
        conn.execute(f"CREATE TABLE bare_indexed (LIKE cdp_events INCLUDING DEFAULTS, {key})")
        conn.execute(f"CREATE TABLE bare_keyed (LIKE cdp_events INCLUDING DEFAULTS, {key})"
                     " PARTITION BY RANGE (received_month)")  # fmt: skip
        for i, month in enumerate(months):
            conn.execute(
                f"CREATE TABLE bare_keyed_{i} PARTITION OF bare_keyed FOR VALUES FROM"
                f" ('{month}') TO ('{month}'::date + interval '1 month')"
            )
        conn.execute("CREATE INDEX ON bare_indexed (user_id)")
        conn.execute("CREATE INDEX ON bare_keyed (user_id)")
        conn.commit()
        rates = []
        for table in ("bare", "bare_indexed", "bare_keyed"):
            started = time.perf_counter()
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            rates.append(len(rows) / (time.perf_counter() - started))
        return rates[0], rates[1], rates[2]


def central_toml(path: Path, servers: list[str], seed: Path, dsn: str, fetch_batch: int = FETCH_BATCH) -> Path:
    listed = ", ".join(f'"{u}"' for u in servers)
    path.write_text(f'[central]\nservers = [{listed}]\ncredentials = "{seed}"\npostgres = "{dsn}"\n'
                    f"replicas = 3\nevents_max_bytes = {512 * 1024**2}\nack_wait_s = 10.0\n"
                    f"fetch_batch = {fetch_batch}\nlag_report_s = 5.0\n")  # fmt: skip
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=40_000, help="events in the backlog (all stores)")
    parser.add_argument("--rate", type=float, default=800.0, help="live events/s, all stores together")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the live phase")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure")
    parser.add_argument("--fetch-batch", type=int, default=FETCH_BATCH, help="central.fetch_batch of the workers")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    fleet = FleetIdentities(work / "fleet")
    fleet.add([f"f{i:03d}" for i in range(STORES)])
    with running_postgres() as admin, running_nats(work / "hub", 3, fleet=fleet, backbone=False) as hub:
        hub.create_backbone([], ack_wait_s=10.0)
        config = hub.central_config(ack_wait_s=10.0)
        per_store = max(1, args.backlog // STORES)
        started = time.monotonic()
        let_out = run_stores(fleet, hub.urls, work, per_store)
        print(
            f"backlog: {let_out} consented events of {per_store * STORES} from {STORES} stores"
            f" published in {time.monotonic() - started:.1f} s"
        )
        results: dict[int, float] = {}
        postmaster = postmaster_pid(admin)
        copy_rate = indexed_rate = keyed_rate = fetch_rate = 0.0
        for n in [int(x) for x in args.workers.split(",")]:
            dsn = fresh_database(admin, f"bench_w{n}")
            asyncio.run(CentralJob(hub.central_config(postgres=dsn)).create_schema())
            asyncio.run(reset_consumer(hub.urls, hub.central_credentials, config))
            toml = central_toml(work / f"central-{n}.toml", hub.urls, fleet.central_seed, dsn, args.fetch_batch)
            procs = workers(n, toml, work)
            cpu = Cpu([p.pid for p in procs], [node.process.pid for node in hub.nodes if node.process], postmaster)
            try:
                rows, first, last, spent = wait_rows(dsn, let_out, timeout=600, cpu=cpu)
            finally:
                for proc in procs:
                    stop(proc, signal.SIGTERM)
            results[n] = rows / max(last - first, 1e-6)
            print(f"{n} worker(s): {rows} rows in {last - first:.2f} s = {results[n]:,.0f} rows/s; {spent}", flush=True)
            if not copy_rate:
                copy_rate, indexed_rate, keyed_rate = bare_copy(dsn)
                fetch_rate = asyncio.run(
                    bare_fetch(
                        hub.urls, hub.central_credentials, hub.central_config(fetch_batch=args.fetch_batch), let_out
                    )
                )
        base = results.get(1) or next(iter(results.values()))
        print(
            f"workers  rows/s    vs 1 worker  vs bare COPY  vs COPY into keyed partitions (fetch_batch {args.fetch_batch})"
        )
        for n, rate in results.items():
            print(
                f"{n:>7}  {rate:>8,.0f}  {rate / base:>10.2f}x  {rate / copy_rate:>11.1%}  {rate / keyed_rate:>11.1%}"
            )
        print(
            f"bare COPY of the same rows: {copy_rate:,.0f} rows/s into a plain table, {indexed_rate:,.0f}"
            f" with the job's key and index, {keyed_rate:,.0f} into a partitioned table with them"
        )
        print(f"bare nats-py fetch + ack of the same backlog (one client, no PostgreSQL): {fetch_rate:,.0f} msg/s")
        if args.seconds <= 0:
            return
        # live phase: 2 workers, lag from the gateway's receivedAt to the PostgreSQL commit
        dsn = fresh_database(admin, "bench_live")
        asyncio.run(CentralJob(hub.central_config(postgres=dsn)).create_schema())
        asyncio.run(reset_consumer(hub.urls, hub.central_credentials, config, purge=True))
        procs = workers(2, central_toml(work / "central-live.toml", hub.urls, fleet.central_seed, dsn), work)
        try:
            sent = run_stores(fleet, hub.urls, work, 200, rate=args.rate, seconds=args.seconds)
            rows, _, _, _ = wait_rows(dsn, sent, timeout=120)
        finally:
            for proc in procs:
                stop(proc, signal.SIGTERM)
        with psycopg.connect(dsn) as conn:
            p50, p99, n_live = conn.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99)"
                " WITHIN GROUP (ORDER BY lag), count(*) FROM (SELECT extract(epoch FROM loaded_at"
                " - received_at::timestamptz) AS lag FROM cdp_events) AS l"
            ).fetchone()
        print(
            f"live: {sent} consented events at {args.rate:.0f} ev/s offered for {args.seconds:.0f} s,"
            f" 2 workers: end-to-end lag p50 {p50:.2f} s, p99 {p99:.2f} s ({n_live} events)"
        )


if __name__ == "__main__":
    main()
