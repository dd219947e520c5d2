"""Decision latency at a fixed offered load, next to a bare ONNX endpoint measured in the same run.

    python bench/decide.py [--rate 200] [--seconds 20] [--skus 50000] [--offers 500]

Builds (once, cached) a 50,000-SKU model with the models package's own simulate → train →
export path, writes 500 offers on its catalog, then for each of two servers — the bare endpoint
(uvicorn + raw ASGI + ``session.run`` only) and the gateway (FastAPI + auth + the decisioning
component: identity, consent, profile, recommender, offers, caps, experiments, exposure
journaled with ``synchronous=FULL``) — starts uvicorn as a subprocess pinned to core 0
(``taskset -c 0``), offers ``--rate`` requests per second open-loop over keep-alive
connections from core 1 (a hand-rolled HTTP/1.1 client: httpx would be the bottleneck), and
reports latency measured from each request's *scheduled* time (so a stall is not hidden by
coordinated omission), the server's CPU time per request (in all and per thread: event loop,
recommender, journal writer), offers per response (proof the gateway did the work), and when
any request over the 15 ms target was sent. Prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.broker import free_port  # noqa: E402

CUSTOMERS = 1000
CONSENTED = 300


# -- model and offers ------------------------------------------------------------------------
def build_model(cache: Path, skus: int) -> Path:
    import hashlib

    from models.build import train_model
    from models.simulate import simulate_store

    # a model built by an older graph builder is rebuilt, not silently measured
    graph = hashlib.sha256((ROOT / "models" / "export.py").read_bytes()).hexdigest()[:10]
    store, model = cache / f"store-{skus}", cache / f"model-{skus}-{graph}"
    if not (model / "manifest.json").exists():
        print(f"building a {skus}-SKU model in {cache} (once; ~2 min at 50k) …", flush=True)
        if not (store / "transactions.csv").exists():
            simulate_store(store, seed=5, customers=1000, days=14, skus=skus)
        train_model(store, model, evaluate=False)
    return model


def write_offers(model: Path, store: Path, path: Path, count: int) -> list[str]:
    with open(store / "transactions.csv", newline="") as fh:
        popular = [s for s, _ in Counter(r["sku"] for r in csv.DictReader(fh)).most_common(count)]
    with open(model / "catalog.csv", newline="") as fh:
        categories = sorted({r["category"] for r in csv.DictReader(fh)})
    n_sku = min(len(popular), count * 3 // 5)
    lines = ['version = "bench"\n']
    for i in range(count):
        target = f'sku = "{popular[i]}"' if i < n_sku else f'category = "{categories[i % len(categories)]}"'
        lines.append(
            f'[[offers]]\nid = "bench-{i}"\ntitle = "Offer {i}"\ntype = "percent_off"\n{target}\n'
            f'value = {1 + i % 5}\nlever = "{("margin", "traffic", "loyalty")[i % 3]}"\n'
            f'zones = ["z{i % 8}"]\ncaps = {{ per_person_day = 3, per_visit = 1 }}\n'
            f'experiment = {{ id = "camp-{i % 20}", holdout = 0.15 }}\n'
        )
    path.write_text("\n".join(lines))
    return popular


# -- the two servers (run in the pinned subprocess) -----------------------------------------
def serve_bare(model: Path, port: int) -> None:
    import numpy as np
    import onnxruntime as ort
    import uvicorn

    from models.catalog import load_catalog
    from models.context import CTX_DIM

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model / "model.onnx"), options, providers=["CPUExecutionProvider"])
    catalog = load_catalog(model / "catalog.csv")
    empty_h = np.full((1, 1), -1, dtype=np.int64)
    zero_w = np.zeros((1, 1), dtype=np.float32)
    ctx = np.zeros((1, CTX_DIM), dtype=np.float32)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/healthz":
            out = b"{}"
        else:
            skus = json.loads(body or b"{}").get("basket", [])
            idx = [i for i in (catalog.index(s) for s in skus) if i is not None] or [-1]
            items, scores = session.run(
                None,
                {
                    "basket": np.array([idx], dtype=np.int64),
                    "history": empty_h,
                    "history_weights": zero_w,
                    "context": ctx,
                },
            )
            out = json.dumps({"items": items[0][:10].tolist()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", http="httptools", lifespan="off", timeout_keep_alive=120
    )


def serve_gateway(model: Path, offers: Path, state: Path, port: int, popular: list[str]) -> None:
    import contextlib

    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from prometheus_client import CollectorRegistry

    import edge.registry
    from edge.bus import Source
    from edge.component import GatewayContext
    from edge.config import parse_config
    from edge.decisioning import CONFIG_SECTIONS, MIGRATIONS, build
    from edge.errors import AuthError
    from edge.heap import freeze_long_lived
    from edge.ingest import Ingestor
    from edge.journal import Journal
    from edge.metrics import IngestMetrics
    from models.runtime import ModelHolder

    config = parse_config({"offers": {"path": str(offers)}}, CONFIG_SECTIONS, env={})
    journal = Journal(
        state / "journal.db",
        synchronous=os.environ.get("BENCH_JOURNAL_SYNC", "full"),  # type: ignore[arg-type]
        migrations=(*MIGRATIONS, *edge.registry.MIGRATIONS),
    )
    registry = CollectorRegistry()
    ingestor = Ingestor(journal, IngestMetrics(registry))
    ctx = GatewayContext(
        config=config,
        state_dir=state,
        journal=journal,
        bus=ingestor,
        publisher=None,
        metrics=registry,
        clock=time.time,  # type: ignore[arg-type]
        store_id="store-001",
    )
    holder = ModelHolder(model)
    component = build(ctx, recommender=lambda: holder.current)
    ingestor.attach(component)
    ingestor.start()
    devices = edge.registry.DeviceRegistry(journal)
    token = devices.add("kiosk", "kiosk-bench").http_token

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        task = asyncio.get_running_loop().create_task(component.run())
        src = Source("store-001", "kiosk-bench", "kiosk", "local")
        rng = random.Random(1)
        for c in range(CONSENTED):
            ids = {"loyaltyId": f"{c:08d}"}
            await ingestor.publish(
                src,
                [
                    {
                        "event": "Consent Updated",
                        "properties": {
                            "identifiers": dict(ids),
                            "categoryPreferences": {"personalization": True, "cdp_sync": True},
                        },
                    },
                    {
                        "event": "Order Completed",
                        "properties": {
                            "identifiers": dict(ids),
                            "products": [{"sku": s, "quantity": 1, "price": 1.0} for s in rng.sample(popular, 5)],
                        },
                    },
                ],
            )
        print(json.dumps({"token": token}), flush=True)
        name_threads()
        freeze_long_lived()  # as edge.gateway does once it is loaded
        yield
        task.cancel()
        ingestor.stop()

    app = FastAPI(lifespan=lifespan)
    app.state.registry = _CachedTokens(devices) if os.environ.get("BENCH_CACHE_TOKENS") else devices

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    for router in component.routers():
        app.include_router(router)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        http="httptools",
        timeout_keep_alive=120,
        access_log=False,
    )


def name_threads() -> None:
    """Give the OS threads their Python names (for the per-thread CPU figures), and keep doing
    so each second: executor threads start lazily."""
    import threading

    for thread in threading.enumerate():
        with contextlib.suppress(OSError, TypeError):
            Path(f"/proc/self/task/{thread.native_id}/comm").write_text(thread.name[:15])
    asyncio.get_running_loop().call_later(1.0, name_threads)


class _CachedTokens:
    """BENCH_CACHE_TOKENS=1: bearer lookups from memory instead of a query under the journal lock
    (which a commit holds through its fsync) — to show what that lock costs."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._cache: dict[str, Any] = {}

    def by_token(self, token: str) -> Any:
        if token not in self._cache:
            self._cache[token] = self._registry.by_token(token)
        return self._cache[token]


# -- the load generator ------------------------------------------------------------------------
class _Connection:
    """One keep-alive HTTP/1.1 connection, hand-rolled: httpx costs more CPU per request than
    the servers under test, which would make the load generator the bottleneck."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)


def _request(path: str, headers: dict[str, str], body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def offered_load(
    port: int, path: str, headers: dict[str, str], bodies: list[dict[str, Any]], rate: float, warmed: Any
) -> tuple[list[float], int, int]:
    idle: list[_Connection] = []
    requests = [_request(path, headers, b) for b in bodies]

    async def connection() -> _Connection:
        if idle:
            return idle.pop()
        return _Connection(*await asyncio.open_connection("127.0.0.1", port))

    for request in requests[:50]:  # warm-up, not measured
        conn = await connection()
        await conn.post(request)
        idle.append(conn)
    warmed()
    latencies: list[float] = []
    errors = offers = 0
    slow: list[float] = []  # when (s into the run) requests over the 15 ms target were sent

    async def one(request: bytes, scheduled: float) -> None:
        nonlocal errors, offers
        conn = await connection()
        status, body = await conn.post(request)
        latencies.append(time.perf_counter() - scheduled)
        if latencies[-1] > 0.015:
            slow.append(scheduled - start)
        idle.append(conn)
        offers += body.count(b'"offerId"')
        if status != 200:
            errors += 1

    tasks = []
    start = time.perf_counter() + 0.05
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(request, scheduled)))
    await asyncio.gather(*tasks)
    for conn in idle:
        conn.writer.close()
    if slow:
        print(
            f"{'':35}{len(slow)} requests over 15 ms, sent at "
            + ", ".join(f"{t:.1f}" for t in slow[:12])
            + (" …" if len(slow) > 12 else "")
            + " s"
        )
    return latencies, errors, offers


def start_server(args: list[str], wait_token: bool) -> tuple[subprocess.Popen[str], str]:
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "serve", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    token = ""
    if wait_token:
        assert proc.stdout is not None
        token = json.loads(proc.stdout.readline())["token"]
    return proc, token


def wait_ready(port: int) -> None:
    import httpx

    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of ``pid`` so far, in all (key "") and per thread name."""
    out: dict[str, float] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name.rstrip("_0123456789")] += seconds
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out[""] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(
    name: str, server_args: list[str], port: int, path: str, bodies: list[dict[str, Any]], rate: float, gateway: bool
) -> dict[str, float]:
    proc, token = start_server(server_args, gateway)
    try:
        wait_ready(port)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        os.sched_setaffinity(0, {1})
        mark: dict[str, Any] = {}

        def warmed() -> None:
            mark.update(cpu=cpu_seconds(proc.pid), wall=time.perf_counter())

        latencies, errors, offers = asyncio.run(offered_load(port, path, headers, bodies, rate, warmed))
        elapsed = time.perf_counter() - mark["wall"]
        after = cpu_seconds(proc.pid)
        cpu = after[""] - mark["cpu"][""]
        threads = {k: v - mark["cpu"].get(k, 0.0) for k, v in after.items() if k}
    finally:
        proc.terminate()
        proc.wait(10)
    ms = [x * 1000 for x in latencies]
    row = {
        "p50_ms": percentile(ms, 0.5),
        "p90_ms": percentile(ms, 0.9),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms),
        "requests": len(ms),
        "errors": errors,
        "rate": len(ms) / elapsed,
        "cpu_ms": 1000 * cpu / len(ms),
        "offers": offers / len(ms),
    }
    print(
        f"{name:<34} p50 {row['p50_ms']:6.2f} ms  p90 {row['p90_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms"
        f"  max {row['max_ms']:7.2f} ms  {row['requests']:.0f} req, {row['errors']:.0f} errors,"
        f" {row['rate']:.0f} req/s achieved; server CPU {row['cpu_ms']:.2f} ms/request"
        f" ({100 * cpu / elapsed:.0f} % of its core); {row['offers']:.2f} offers/response",
        flush=True,
    )
    print(
        " " * 35
        + "CPU ms/request by thread: "
        + ", ".join(f"{k} {1000 * v / len(ms):.2f}" for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v > 0)
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--skus", type=int, default=50_000)
    parser.add_argument("--offers", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edge-bench-decide")
    args = parser.parse_args()
    model = build_model(args.cache, args.skus)
    with tempfile.TemporaryDirectory() as tmp:
        offers = Path(tmp) / "offers.toml"
        popular = write_offers(model, args.cache / f"store-{args.skus}", offers, args.offers)
        (Path(tmp) / "popular.json").write_text(json.dumps(popular[:200]))
        rng = random.Random(7)
        n = int(args.rate * args.seconds)
        bodies = []
        for i in range(n + 50):
            customer = rng.randrange(CUSTOMERS)
            bodies.append(
                {
                    "identifiers": {"loyaltyId": f"{customer:08d}"},
                    "visitId": f"v{customer}-{i // 400}",
                    "basket": rng.sample(popular[:200], rng.randrange(0, 5)),
                    "zone": f"z{rng.randrange(8)}",
                    "weather": "clear",
                }
            )
        print(
            f"model {model} ({args.skus} SKUs), {args.offers} offers, {args.rate:.0f} req/s offered"
            f" for {args.seconds:.0f} s, server on core 0, load from core 1",
            flush=True,
        )
        port = free_port()
        bare = measure(
            "bare uvicorn + session.run", ["bare", str(model), str(port)], port, "/score", bodies, args.rate, False
        )
        port = free_port()
        state = Path(tmp) / "state"
        gw = measure(
            "gateway POST /v1/decisions",
            ["gateway", str(model), str(port), str(offers), str(state), str(Path(tmp) / "popular.json")],
            port,
            "/v1/decisions",
            bodies,
            args.rate,
            True,
        )
    print(
        f"gateway/bare p99 = {gw['p99_ms'] / bare['p99_ms']:.2f}x (target ≤ 2x);"
        f" gateway p99 {gw['p99_ms']:.2f} ms (target ≤ 15 ms);"
        f" CPU per request gateway/bare = {gw['cpu_ms'] / bare['cpu_ms']:.2f}x"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        kind, model_dir, port_text = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
        if kind == "bare":
            serve_bare(model_dir, port_text)
        else:
            state_dir = Path(sys.argv[6])
            state_dir.mkdir(parents=True, exist_ok=True)
            serve_gateway(model_dir, Path(sys.argv[5]), state_dir, port_text, json.loads(Path(sys.argv[7]).read_text()))
    else:
        main()
