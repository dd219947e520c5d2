"""Retention for everything personal, under Debian's ``faketime``: a store's state written by
the real component at two moments (10 days ago, and 390 days ahead), then ``edge retention
prune`` run as a subprocess under a clock 400 days ahead (libfaketime, so ``time.time()`` of the
real CLI is moved, not a clock we inject): no table holds personal data older than
``journal.retention_days``, what is younger stays, and a kept profile loses its old purchases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.faketime import skip_unless_sleep_works
from support.gateway import wait_until
from support.services import require_program

from devices.ble.rotating import AppKeyStore
from edge import schema
from edge.decisioning.personal import NOT_PERSONAL, PERSONAL_TABLES
from edge.journal import Journal
from edge.triggers.tables import Firing, FiringStore

from .conftest import Gateway, make_gateway, running, scan_for

EDGE = Path(sys.executable).with_name("edge")
DAY_S = 86_400
CONSENT_ALL = {"personalization": True, "analytics": True, "cdp_sync": True}


def test_every_table_is_classified_and_dated(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db", migrations=schema.migrations()) as journal, journal.connection() as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        }
        personal = {t.table: t for t in PERSONAL_TABLES}
        assert tables - set(personal) - set(NOT_PERSONAL) == set(), "classify new tables in personal.py"
        for name, table in personal.items():
            columns = {r[1] for r in conn.execute(f"PRAGMA table_info({name})")}
            assert table.time_column in columns, name


async def _a_person_at(gw: Gateway, when_s: float, loyalty: str, note: str) -> str:
    """Consent, events, a decision and a redeemed order of one person at ``when_s``."""
    gw.clock.now = when_s
    token = gw.component.identity.token("loyaltyId", loyalty)
    src, pos = gw.source(), gw.source("pos", "pos-1", "serial")
    await gw.publish(
        src, [{"event": "Consent Updated", "userId": token, "properties": {"categoryPreferences": CONSENT_ALL}}]
    )
    await gw.publish(
        src,
        [
            {
                "event": "Product Viewed",
                "userId": token,
                "anonymousId": f"v-{loyalty}",
                "properties": {"sku": "SKU00007", "note": note},
            }
        ],
    )
    decision = await gw.component.decide(src, {"userId": token, "basket": []})
    await gw.drain()
    offered = [o["sku"] for o in decision["offers"] if o.get("sku")] or ["SKU00000"]
    await gw.publish(
        pos,
        [
            {
                "event": "Order Completed",
                "userId": token,
                "properties": {
                    "orderId": f"o-{loyalty}-{int(when_s)}",
                    "products": [{"sku": offered[0], "quantity": 1, "price": 2.0}],
                },
            }
        ],
    )
    await gw.publish(src, [{"event": "Not An Event", "userId": token, "properties": {"note": note}}])
    await gw.drain()
    return token


def _firing(token: str, when_s: float) -> Firing:
    ms = int(when_s * 1000)
    return Firing(f"resupply@1:p:{token}:{ms}", f"d-{ms}", "resupply", 1, "a", f"p:{token}", token, "visit-x",
                  "tablet", "tablet-1", ms, True, "delivered", [], {"redeem": ["resupply"]}, None, ms + 3_600_000)  # fmt: skip


@pytest.fixture
def aged_state(tmp_path: Path) -> Iterator[tuple[Path, Path, float, str, str]]:
    """A state dir written at two moments, its config file, "now", and two customers' tokens:
    ``gone`` (only 10 days ago) and ``kept`` (10 days ago and 390 days ahead)."""
    require_program("faketime")
    state = tmp_path / "state"
    Journal(state / "journal.db", migrations=schema.migrations()).close()  # every feature's tables
    gw = make_gateway(tmp_path)
    now = time.time()
    old_s, new_s = now - 10 * DAY_S, now + 390 * DAY_S

    async def write() -> tuple[str, str]:
        async with running(gw):
            gone = await _a_person_at(gw, old_s, "1001", "old-only-person-note")
            kept = await _a_person_at(gw, old_s, "1002", "kept-person-old-note")
            AppKeyStore(gw.journal).register(gone, bytes(32))  # registered now: 400 days old then
            await _a_person_at(gw, new_s, "1002", "kept-person-new-note")
            AppKeyStore(gw.journal).register(kept, bytes(range(32)))
            firings = FiringStore(gw.journal)  # the triggers' own writer: a firing about each, at each moment
            firings.write([_firing(gone, old_s), _firing(kept, old_s), _firing(kept, new_s)], [])
            with gw.journal.transaction() as conn:  # as if written 390 days ahead
                conn.execute("UPDATE devices_app_keys SET registered_ms = ? WHERE token = ?", (int(new_s * 1000), kept))
                conn.execute(
                    "UPDATE dead_letters SET received_ms = ? WHERE id = (SELECT MAX(id) FROM dead_letters)",
                    (int(new_s * 1000),),
                )
        return gone, kept

    try:
        gone, kept = asyncio.run(write())
    finally:
        gw.ingestor.stop()
        gw.journal.close()
    profile = _rows(state, "SELECT purchases FROM profiles WHERE user_id = ?", kept)
    assert len(json.loads(str(profile[0][0]))) == 2, "the kept person bought once at each moment"
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        f'[store]\nid = "s1"\nstate_dir = "{state}"\n[http]\nhost = "127.0.0.1"\nport = 0\n'
        '[mqtt]\nmode = "managed"\nmanaged_port = 0\n'
        # loopback only, as every gateway test: no TLS device listener on 0.0.0.0:8883
        '[broker]\ninterfaces = []\nplaintext_hosts = ["127.0.0.1"]\nplaintext_port = 0\n'
        "[tls]\nhttp = false\n"
    )
    yield state, toml, now, gone, kept


def _faketime(*argv: str) -> list[str]:
    return [shutil.which("faketime") or "/usr/bin/faketime", "-f", "+400d", *argv]


def _older_rows(state: Path, cutoff_ms: int) -> dict[str, int]:
    return {t.table: int(str(_rows(state, f"SELECT COUNT(*) FROM {t.table} WHERE {t.time_column} < ?",
                                   cutoff_ms)[0][0])) for t in PERSONAL_TABLES}  # fmt: skip


def _check_pruned(state: Path, now: float, gone: str, kept: str) -> None:
    cutoff_ms = int((now + 400 * DAY_S - 395 * DAY_S) * 1000)
    assert _older_rows(state, cutoff_ms) == {t.table: 0 for t in PERSONAL_TABLES}
    for table in PERSONAL_TABLES:
        younger = _rows(state, f"SELECT COUNT(*) FROM {table.table} WHERE {table.time_column} >= ?", cutoff_ms)
        assert int(str(younger[0][0])) > 0, f"{table.table}: what is younger than the retention stays"
    purchases = json.loads(str(_rows(state, "SELECT purchases FROM profiles WHERE user_id = ?", kept)[0][0]))
    items = json.loads(str(_rows(state, "SELECT items FROM profiles WHERE user_id = ?", kept)[0][0]))
    assert len(purchases) == 1 and all(ms >= cutoff_ms for _, ms in purchases)
    assert items and all(last >= cutoff_ms for last, _ in items.values())
    assert _rows(state, "SELECT COUNT(*) FROM consent WHERE user_id = ?", gone) == [(0,)]
    # the pruned bytes are gone from the file and its WAL too (secure_delete, checkpoint)
    assert scan_for([state], [gone, "old-only-person-note", "kept-person-old-note"]) == []
    assert scan_for([state], ["kept-person-new-note"]) != []


def test_retention_prune_under_faketime(aged_state: tuple[Path, Path, float, str, str]) -> None:
    state, toml, now, gone, kept = aged_state
    done = subprocess.run(_faketime(str(EDGE), "retention", "prune", "--config", str(toml)),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert time.strftime("%Y-%m-%d", time.gmtime(now + 5 * DAY_S)) in done.stdout, done.stdout
    _check_pruned(state, now, gone, kept)


@pytest.mark.integration
def test_gateway_under_faketime_prunes_at_start(aged_state: tuple[Path, Path, float, str, str]) -> None:
    """The real gateway (``edge run``, its managed Mosquitto too) started 400 days ahead."""
    skip_unless_sleep_works()  # Debian 12 arm64's libfaketime breaks time.sleep (support/faketime.py)
    state, toml, now, gone, kept = aged_state
    cutoff_ms = int((now + 5 * DAY_S) * 1000)
    with open(state.parent / "gateway-faketime.log", "wb") as log:
        # its own process group: the faketime wrapper forks and does not pass SIGTERM on
        gateway = subprocess.Popen(_faketime(str(EDGE), "run", "--config", str(toml)), start_new_session=True,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: gateway.poll() is not None or not any(_older_rows(state, cutoff_ms).values()),
                   timeout=90, interval=0.5)  # fmt: skip
        assert gateway.poll() is None, (state.parent / "gateway-faketime.log").read_text()[-2000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(30)
    _check_pruned(state, now, gone, kept)


def _rows(state: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with Journal(state / "journal.db") as journal, journal.connection() as conn:
        return conn.execute(sql, args).fetchall()
