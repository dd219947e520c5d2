"""`make demo` — the README's first command — bootstraps, serves and fills the journal."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.emulation import scaled

from edge import schema

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_runs_a_simulated_store(tmp_path):
    """At the default speed, for 45 s: the store fills the journal and every trigger of the demo
    library fires (resupply and complement from the cycles and pairs the gateway learnt from the
    till's upload of past receipts)."""
    state = tmp_path / "demo"
    result = subprocess.run(
        ["make", "-s", "demo", f"DEMO_ARGS=--duration 45 --http-port 0 --state-dir {state}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(300),
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"HTTP API\s+http://127\.0\.0\.1:\d+", result.stdout)
    assert re.search(r"MQTT broker\s+mqtt://127\.0\.0\.1:\d+", result.stdout)
    fleet = json.loads((state / "demo" / "fleet.json").read_text())
    assert {d["kind"] for d in fleet["devices"]} == {"kiosk", "display", "tablet", "pos", "ops"}
    config = schema.load(None, env={"EDGE_STORE__STATE_DIR": str(state)})
    with schema.open_journal(config) as journal:
        stats = journal.stats()
    assert stats["events"] > 20, stats
    assert stats["by_event"].get("Order Completed", 0) > 0 and stats["by_event"].get("Offer Exposed", 0) > 0
    assert not stats["dead_letters"], stats["dead_letters"]
    with schema.open_journal(config) as journal:
        fired = dict(journal.reader().execute("SELECT trigger_id, COUNT(*) FROM trigger_firings GROUP BY 1"))
    assert set(fired) == {"browse-no-buy", "dwell-associate", "basket-complement", "resupply"}, fired
    logged = set(re.findall(r"trigger ([a-z-]+)@\d+ fired: arm", result.stdout + result.stderr))
    assert logged == set(fired), logged  # and the newcomer sees them in the log
