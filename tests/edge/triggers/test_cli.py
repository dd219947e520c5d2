"""`edge triggers report [--json]` and `edge triggers promote` on a journal with firings; the
promotion changes the arms the runtime assigns, and versions stay apart in the report."""

from __future__ import annotations

import asyncio
import json

from trigger_helpers import runtime

from devices.sim.triggers import make_event
from edge import schema
from edge.cli import main
from edge.triggers.tables import FiringStore

LIBRARY = """
[touchpoints]
kiosk = "kiosk-1"
[[triggers]]
id = "nudge"
version = {version}
audience = "anonymous"
holdout = 0.3
min_holdout = 0.05
signal = {{ kind = "event", event = "Product Viewed" }}
action = {{ touchpoint = "kiosk", content = "fixed" }}
contact = {{ per_unit_day = 9, per_visit = 9 }}
[[triggers.variants]]
id = "a"
offer = {{ offerId = "oa", title = "A" }}
[[triggers.variants]]
id = "b"
offer = {{ offerId = "ob", title = "B" }}
"""


def test_report_and_promote(tmp_path, monkeypatch, capsys):
    state = tmp_path / "state"
    lib = tmp_path / "lib.toml"
    lib.write_text(LIBRARY.format(version=1))
    monkeypatch.setenv("EDGE_STORE__STATE_DIR", str(state))
    monkeypatch.setenv("EDGE_TRIGGERS__PATH", str(lib))
    config = schema.load(None)
    journal = schema.open_journal(config)

    def fire(rt, n, version):
        arms = []
        for i in range(n):
            at = 1_767_600_000_000 + i * 1000
            arms += [
                f.arm
                for f in asyncio.run(
                    rt.on_events(
                        [
                            make_event(
                                "Product Viewed", at, anonymous_id=f"v{version}-{i}", properties={"sku": "SKU00001"}
                            )
                        ],
                        at,
                    )
                )
            ]
        rt.flush()
        return arms

    rt, _, _ = runtime(tmp_path, LIBRARY.format(version=1), journal=journal)
    fire(rt, 100, 1)
    assert main(["triggers", "report", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["triggers"]
    assert row["trigger"] == "nudge" and row["version"] == 1 and 15 <= row["heldOut"] <= 45
    assert {v["variant"] for v in row["variants"]} == {"a", "b"}
    assert main(["triggers", "report"]) == 0
    assert "(holdout)" in capsys.readouterr().out
    assert main(["triggers", "promote", "nudge", "zzz"]) == 2
    assert "has no variant 'zzz'" in capsys.readouterr().err
    assert main(["triggers", "promote", "nudge", "b"]) == 0
    assert "promoted nudge@1 → b" in capsys.readouterr().out
    assert FiringStore(journal).promotions()[("nudge", 1)][:2] == ("b", 0.05)
    rt.set_library(rt.library)  # the gateway re-reads promotions within triggers.reload_seconds
    arms = fire(rt, 200, 2)
    assert set(arms) <= {"b", "holdout"} and arms.count("holdout") < 25  # holdout shrank to min_holdout
    assert main(["triggers", "report", "--json"]) == 0
    variants = {v["variant"]: v for v in json.loads(capsys.readouterr().out)["triggers"][0]["variants"]}
    assert variants["b"]["verdict"] == "promoted" and variants["a"]["verdict"] == "retired"
    journal.close()
