"""How the parts reach each other: the journal owns its SQL; features are wired by the root.

These read the source the way a reviewer would: a statement on the journal's tables outside
``edge/journal.py``, or a feature looking another one up by name or duck typing, fails here
with the file and line to fix.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edge.component import GatewayContext
from edge.gateway import Features, build_features

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edge", "devices", "sync", "models")
JOURNAL = ROOT / "edge" / "journal.py"
#: The centre's own PostgreSQL ``events`` table, not the store's journal.
CENTRAL = {ROOT / "sync" / "central.py", ROOT / "sync" / "central_train.py"}

_JOURNAL_SQL = re.compile(
    r"\b(FROM|INTO|UPDATE|JOIN|TABLE|ON|INDEXED\s+BY)\s+[\"']?(events|dead_letters|sink_cursors)\b"
)


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _hits(pattern: re.Pattern[str], skip: set[Path]) -> list[str]:
    found = []
    for path in _sources():
        if path in skip:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_the_pattern_finds_statements_on_the_journal_tables():
    assert _JOURNAL_SQL.search('conn.execute("SELECT seq FROM events WHERE seq > ?")')
    assert _JOURNAL_SQL.search("DELETE FROM dead_letters WHERE id <= ?")
    assert _JOURNAL_SQL.search("INSERT INTO sink_cursors (sink, seq) VALUES (?, ?)")
    assert _JOURNAL_SQL.search("CREATE INDEX x ON events(seq, size)")
    assert not _JOURNAL_SQL.search("SELECT * FROM exposures WHERE user_id = ?")
    assert not _JOURNAL_SQL.search("the events of a visit")


def test_no_module_but_the_journal_runs_sql_on_its_tables():
    hits = _hits(_JOURNAL_SQL, {JOURNAL, *CENTRAL})
    assert hits == [], "ask edge.journal.Journal for a named method instead:\n" + "\n".join(hits)
    assert _hits(re.compile(r"\bINSERT_EVENT\b"), {JOURNAL}) == []
    # the check sees the journal's own statements, so it would see them anywhere else
    assert len(_hits(_JOURNAL_SQL, set())) > len(_hits(_JOURNAL_SQL, {JOURNAL}))


def test_no_feature_looks_another_up():
    lookups = re.compile(r"ctx\.components|\.components\.get\(|components\[\"")
    assert _hits(lookups, set()) == []
    duck = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
                args = node.args
                name = args[1].value if len(args) > 1 and isinstance(args[1], ast.Constant) else None
                if name in {
                    "eraser",
                    "holder",
                    "add_hook",
                    "is_suppressed",
                    "is_erased",
                    "allows",
                    "decide_handler",
                    "offers_path",
                    "identity",
                    "default_region",
                }:
                    duck.append(f"{path.relative_to(ROOT)}:{node.lineno}: getattr(…, {name!r})")
    assert duck == [], "\n".join(duck)


def test_the_context_carries_no_registry_of_features():
    fields = set(GatewayContext.__dataclass_fields__)
    assert fields == {"config", "state_dir", "journal", "bus", "publisher", "metrics", "clock", "store_id"}


def test_the_store_id_is_parsed_nowhere():
    assert _hits(re.compile(r"topic_root\.(r?strip|split|rsplit)"), set()) == []


def test_the_root_names_every_feature_the_configuration_can_enable():
    from edge.settings import FEATURES

    source = (ROOT / "edge" / "gateway.py").read_text()
    for name in FEATURES:
        assert f'"{name}" in enabled' in source, f"edge/gateway.py does not build {name}"
    assert set(Features.__dataclass_fields__) == {"model", "decisioning", "triggers", "devices", "sync"}


def _ctx(tmp_path: Path, enabled: list[str]):
    from prometheus_client import CollectorRegistry

    from edge import schema
    from edge.config import parse_config
    from edge.ingest import Ingestor
    from edge.metrics import IngestMetrics

    config = parse_config({"store": {"id": "s1", "state_dir": str(tmp_path)}, "features": {"enabled": enabled}},
                          schema.config_schema(), {})  # fmt: skip
    journal = schema.open_journal(config)
    registry = CollectorRegistry()
    ingestor = Ingestor(journal, IngestMetrics(registry))

    class Publisher:
        def publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
            pass

    return GatewayContext(config=config, state_dir=tmp_path, journal=journal, bus=ingestor,
                          publisher=Publisher(), metrics=registry, clock=lambda: 1.79e9, store_id="s1")  # fmt: skip


@pytest.mark.parametrize("enabled", [["edge.decisioning", "devices", "sync"], ["devices", "sync"]])
def test_features_get_their_ports_from_the_root(tmp_path, enabled):
    ctx = _ctx(tmp_path, enabled)
    try:
        features = build_features(ctx, enabled)
        assert features.model is None
        assert [c.name for c in features.components()] == [n.split(".")[-1] for n in enabled]
        sync, devices, decisioning = features.sync, features.devices, features.decisioning
        assert sync is not None and devices is not None
        token = "ct_" + "1" * 32
        if decisioning is None:  # no consent known: nothing about a person leaves, no downlink
            assert sync.outbox.still_allowed(token) is False and sync.outbox.is_erased(token) is True
            assert sync.downlink is None
            return
        # the outbox asks decisioning's one policy at send time
        assert sync.outbox.still_allowed(token) is False and sync.outbox.is_erased(token) is False
        # the app key devices keep joins every erasure, through the hook the root gave it
        devices.app_keys.register(token, bytes(range(32)))
        assert [t for t, _ in devices.app_keys.items()] == [token]
        assert decisioning.erase(token, "wiring-1") >= 1
        assert devices.app_keys.items() == []
        assert sync.outbox.is_erased(token) is True
    finally:
        ctx.journal.close()
