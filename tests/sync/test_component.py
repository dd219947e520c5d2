"""The sync component as the gateway builds it: defaults, run loop, status route, CLI, docs."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
from pathlib import Path

import httpx
import pytest
from helpers import Spec, expected_ids, fill, mixed_specs
from prometheus_client import CollectorRegistry

import sync
from edge import schema
from edge.component import GatewayContext
from edge.config import parse_config, section_keys
from edge.http import create_app
from edge.registry import DeviceRegistry
from sync.cli import add_commands
from sync.component import build

DOCS = Path(__file__).resolve().parents[2] / "sync" / "README.md"


class AllowEveryone:
    """A consent policy under which every event may leave (the sink, not consent, is tested)."""

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return True

    def is_suppressed(self, user_id: str | None) -> bool:
        return False


def context(tmp_path: Path, **sections: dict) -> GatewayContext:
    raw = {"store": {"id": "s1", "state_dir": str(tmp_path)}, **sections}
    config = parse_config(raw, schema.config_schema(), {})
    journal = schema.open_journal(config)
    return GatewayContext(config=config, state_dir=tmp_path, journal=journal, bus=None,  # type: ignore[arg-type]
                          publisher=None, metrics=CollectorRegistry(), clock=lambda: 1.0,  # type: ignore[arg-type]
                          store_id="s1")  # fmt: skip


def test_plain_gateway_is_offline_and_without_decisioning_no_person_leaves(tmp_path):
    ctx = context(tmp_path)
    component = build(ctx)
    assert component.name == "sync" and component.sinks() == {}
    assert component.outbox.still_allowed("ct_" + "0" * 32) is False
    asyncio.run(asyncio.wait_for(component.run(), 1))  # nothing enabled: returns at once
    ctx.journal.close()


def test_run_syncs_and_the_status_route_is_ops_only(tmp_path):
    ctx = context(tmp_path, sync_http={"enabled": True, "base_url": "http://cdp.test", "write_key": "k"},
                  sync={"idle_poll_s": 0.05})  # fmt: skip
    got: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        got.extend(m["messageId"] for m in json.loads(gzip.decompress(request.content))["batch"])
        return httpx.Response(200)

    component = build(ctx, policy=AllowEveryone(), http_transport=httpx.MockTransport(handler))
    events = fill(ctx.journal, mixed_specs(500) + [Spec("Audience Measured")])

    async def run_briefly():
        task = asyncio.create_task(component.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if ctx.journal.backlog("http") == 0:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_briefly())
    assert set(got) == expected_ids(events)
    registry = DeviceRegistry(ctx.journal)
    ops, kiosk = registry.add("ops", "ops-1"), registry.add("kiosk", "kiosk-9")
    app = create_app(store_id="s1", registry=registry, ingestor=None, metrics=ctx.metrics,  # type: ignore[arg-type]
                     readiness={}, routers=component.routers(), version="test")  # fmt: skip

    async def call(token: str | None) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            return await client.get("/v1/sync/status", headers=headers)

    assert asyncio.run(call(None)).status_code == 401
    assert asyncio.run(call(kiosk.http_token)).status_code == 403
    response = asyncio.run(call(ops.http_token))
    assert response.status_code == 200
    body = response.json()
    assert body["sinks"]["http"]["backlog"] == 0 and body["sinks"]["http"]["last_success_ms"]
    assert ctx.metrics.get_sample_value("sync_events_sent_total", {"sink": "http"}) == len(got)
    ctx.journal.close()


def test_cli_commands_parse_and_are_documented():
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command"))
    docs = DOCS.read_text()
    for argv in (["sync", "status"], ["sync", "drain"], ["central", "run", "--nats", "nats://a:1", "--postgres", "x"],
                 ["central", "erase", "--user", "ct_x", "--request-id", "r"],
                 ["central", "identities", "--fleet", "f", "--store", "s1"], ["central", "streams", "--fleet", "f"],
                 ["central", "erasures"], ["central", "status", "--fleet", "f"],
                 ["central", "publish-model", "m", "--catalog", "c", "--signing-key", "k", "--fleet", "f"],
                 ["central", "publish-offers", "o.toml", "--fleet", "f", "--signing-key", "k"],
                 ["central", "train", "--out", "m", "--catalog", "c.csv"]):  # fmt: skip
        assert callable(parser.parse_args(argv).func)
        assert f"edge {' '.join(argv[:2])}" in docs, argv


@pytest.mark.integration
def test_drain_checks_consent_with_the_gateways_own_ledger_by_default(tmp_path, receiver):
    """No policy given: ``edge sync drain`` asks the ledger and suppression list in the journal,
    as the running gateway would — a person whose snapshot said yes but who has no consent on
    record (default deny) stays in the store; events about no one leave."""
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f'[store]\nid = "s1"\nstate_dir = "{tmp_path}"\n'
        f'[sync_http]\nenabled = true\nbase_url = "{receiver.url}"\nwrite_key = "{receiver.write_key}"\n'
    )
    with schema.open_journal(schema.load(config_path)) as journal:
        events = fill(journal, [Spec("Product Viewed", user=1, consent=True), Spec("Audience Measured"),
                                Spec("Product Viewed", anonymous=True, consent=True)])  # fmt: skip
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sync", "drain", "--config", str(config_path)])
    assert args.func(args) == 0
    assert set(receiver.received_ids()) == {events[1].message_id, events[2].message_id}


def test_every_config_key_is_documented():
    docs = DOCS.read_text()
    for key, _type, _default, text in section_keys(sync.CONFIG_SECTIONS):
        assert text, f"{key} has no doc text"
        assert f"`{key}`" in docs, f"{key} missing from sync/README.md"


def test_exported_members():
    """``__all__`` lists exactly the public names of the package (fails when it drifts)."""
    eager = {"CONFIG_SECTIONS", "MIGRATIONS", "build"}
    assert sorted(sync.__all__) == sorted(eager | set(sync._LAZY))  # lazy names load on first use
    for name in sync.__all__:
        assert getattr(sync, name) is not None, name


@pytest.mark.integration
def test_sync_drain_and_status_commands(tmp_path, receiver, capsys):
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(
        f'[store]\nid = "s1"\nstate_dir = "{tmp_path}"\n'
        f'[sync_http]\nenabled = true\nbase_url = "{receiver.url}"\nwrite_key = "{receiver.write_key}"\n'
    )
    with schema.open_journal(schema.load(config_path)) as journal:
        events = fill(journal, mixed_specs(3000))
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command"),
                 policy_factory=lambda journal, config: AllowEveryone())  # fmt: skip
    args = parser.parse_args(["sync", "drain", "--config", str(config_path)])
    assert args.func(args) == 0
    assert set(receiver.received_ids()) == expected_ids(events)
    capsys.readouterr()
    args = parser.parse_args(["sync", "status", "--config", str(config_path)])
    assert args.func(args) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["sinks"]["http"]["backlog"] == 0
    assert status["sinks"]["http"]["sent"] == len(expected_ids(events))
