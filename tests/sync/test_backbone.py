"""The centre owns the backbone; each store's identity can do its own work and nothing else.

Against a real nats-server that admits only the fleet's nkeys (`edge central identities`'s
auth.conf included in its configuration) and on which the centre created the streams and
consumers (`edge central streams`).
"""

from __future__ import annotations

import argparse
import asyncio
import json

import nats
import nats.errors
import pytest
from helpers import token

from edge.journal import Journal
from sync import MIGRATIONS
from sync.backbone import Backbone, verify_backbone
from sync.cli import add_commands
from sync.config import CentralConfig, DownlinkConfig, NatsSinkConfig
from sync.downlink import Downlink, DownlinkHandlers
from sync.identities import FleetIdentities, hub_authorization, public_key
from sync.messages import ConsentChange, downlink_subject, encode_downlink
from sync.metrics import SyncMetrics
from sync.nats_sink import JetStreamSink, connect
from sync.sink import OutboundEvent


def event(store: str, i: int) -> OutboundEvent:
    body = {"messageId": f"{store}-{i}", "storeId": store, "receivedAt": "2026-12-01T00:00:00Z"}
    return OutboundEvent(i, f"{store}-{i}", json.dumps(body))


async def as_store(fleet: FleetIdentities, store: str, urls: list[str], errors: list[str]):
    """A raw nats-py client with the store's identity, recording what the server refused."""

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(
        servers=urls, nkeys_seed=str(fleet.store_seed(store)), inbox_prefix=f"_INBOX_{store}",
        error_cb=on_error, allow_reconnect=False,
    )  # fmt: skip


@pytest.mark.integration
def test_a_store_identity_cannot_touch_another_store_or_the_streams(secured_nats, fleet):
    urls = secured_nats.urls
    errors: list[str] = []

    async def go():
        centre = await connect(urls, secured_nats.central_credentials, name="centre")
        cjs = centre.jetstream(timeout=5)
        await cjs.publish(downlink_subject("s2"), b'{"kind":"consent"}', headers={"Nats-Msg-Id": "d-s2"})
        nc = await as_store(fleet, "s1", urls, errors)
        js = nc.jetstream(timeout=0.5)
        # publish to store s2's subject: refused, nothing stored
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await js.publish("cdp.events.s2", b"{}", headers={"Nats-Msg-Id": "forged"})
        # read s2's downlink: the pull request is refused, the message stays for s2
        sub = await js.pull_subscribe_bind("store-s2", stream="CDP_DOWNLINK")
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await sub.fetch(1, timeout=1)
        # snoop on every store's events: the subscription is refused
        await nc.subscribe("cdp.events.>")
        await nc.flush()
        # create, change, delete streams or consumers, even read stream info: refused
        for call in (
            lambda: js.add_stream(name="MINE", subjects=["cdp.events.s1"]),
            lambda: js.delete_stream("CDP_EVENTS"),
            lambda: js.purge_stream("CDP_EVENTS"),
            lambda: js.delete_consumer("CDP_DOWNLINK", "store-s2"),
            lambda: js.add_consumer("CDP_DOWNLINK", durable_name="spy", filter_subject="cdp.downlink.s2"),
            lambda: js.stream_info("CDP_EVENTS"),
        ):
            with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
                await call()
        await nc.close()
        events_info = await cjs.stream_info("CDP_EVENTS")
        s2_pending = (await cjs.consumer_info("CDP_DOWNLINK", "store-s2")).num_pending
        streams = sorted(s.config.name for s in await cjs.streams_info())
        consumers = sorted(c.name for c in await cjs.consumers_info("CDP_DOWNLINK"))
        await centre.close()
        return events_info.state.messages, s2_pending, streams, consumers

    messages, s2_pending, streams, consumers = asyncio.run(go())
    assert messages == 0 and s2_pending == 1
    assert streams == ["CDP_DOWNLINK", "CDP_EVENTS", "CDP_STATUS"]
    assert consumers == ["store-s1", "store-s2"]
    refused = " | ".join(e for e in errors if "permissions violation" in e)  # nats-py lower-cases
    for subject in ("publish to \"cdp.events.s2\"", "msg.next.cdp_downlink.store-s2",
                    "subscription to \"cdp.events.>\"", "stream.create.mine", "stream.delete.cdp_events",
                    "stream.purge.cdp_events", "consumer.delete.cdp_downlink.store-s2",
                    "stream.info.cdp_events"):  # fmt: skip
        assert subject in refused, (subject, errors)


@pytest.mark.integration
def test_a_store_identity_syncs_its_events_and_consumes_its_downlink(secured_nats, fleet, tmp_path):
    urls = secured_nats.urls
    seed = str(fleet.store_seed("s1"))
    applied: list[tuple[str, dict[str, bool]]] = []

    async def go():
        async with JetStreamSink(NatsSinkConfig(enabled=True, servers=urls, credentials=seed), "s1") as sink:
            result = await sink.send([event("s1", i) for i in range(50)])
        centre = await connect(urls, secured_nats.central_credentials, name="centre")
        cjs = centre.jetstream(timeout=5)
        change = ConsentChange("c1", token(3), {"cdp_sync": False}, "cdp")
        await cjs.publish(downlink_subject("s1"), encode_downlink(change), headers={"Nats-Msg-Id": "c1"})
        with Journal(tmp_path / "j.db", migrations=MIGRATIONS) as journal:
            handlers = DownlinkHandlers(lambda u, p, s: applied.append((u, dict(p))), lambda u, r: None,
                                        lambda b: None, lambda d: None)  # fmt: skip
            config = DownlinkConfig(enabled=True, servers=urls, credentials=seed)
            down = Downlink(journal, config, handlers, "s1", tmp_path, SyncMetrics())
            consumed = await down.consume_available()
        info = await cjs.stream_info("CDP_EVENTS", subjects_filter="cdp.events.s1")
        downlink_left = (await cjs.stream_info("CDP_DOWNLINK")).state.messages
        await centre.close()
        return result, consumed, info, downlink_left

    result, consumed, info, downlink_left = asyncio.run(go())
    assert (result.sent, result.duplicates) == (50, 0)
    assert info.state.subjects == {"cdp.events.s1": 50}
    assert consumed == 1 and applied == [(token(3), {"cdp_sync": False})]
    assert downlink_left == 0, "interest retention: the acked downlink message is gone"


@pytest.mark.integration
def test_streams_command_creates_then_checks_the_backbone(bare_nats_server, tmp_path, capsys):
    fleet = FleetIdentities(tmp_path / "fleet")
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command"))

    def run(*argv: str) -> tuple[int, dict[str, object]]:
        args = parser.parse_args(list(argv))
        code = args.func(args)
        return code, json.loads(capsys.readouterr().out)

    code, out = run("central", "identities", "--fleet", str(fleet.root), "--store", "a", "--store", "b")
    assert code == 0 and out["created"] == ["a", "b"] and fleet.stores() == ["a", "b"]
    assert run("central", "identities", "--fleet", str(fleet.root), "--store", "a")[1]["created"] == []
    toml = tmp_path / "central.toml"
    toml.write_text(f"[central]\nreplicas = 1\nevents_max_bytes = {1 << 28}\n")
    base = ("--fleet", str(fleet.root), "--nats", bare_nats_server.url, "--config", str(toml))
    code, out = run("central", "streams", "--check", *base)
    assert code == 1 and "stream CDP_EVENTS is missing" in out["check"]
    code, out = run("central", "streams", *base)
    assert code == 0 and "created consumer CDP_DOWNLINK/store-b" in out["done"]
    assert run("central", "streams", "--check", *base) == (0, {"check": [], "stores": 2})
    # a stream changed behind the centre's back is reported, then put right
    config = CentralConfig(servers=bare_nats_server.urls, replicas=1, events_max_bytes=1 << 28)

    async def tamper() -> list[str]:
        nc = await nats.connect(servers=bare_nats_server.urls)
        try:  # a loaded machine can take longer than nats-py's default 5 s per API call
            js = nc.jetstream(timeout=30)
            events = Backbone(config).streams()[0]
            events.max_age = 7200.0
            await js.update_stream(events)
            return await verify_backbone(js, config, ["a", "b"])
        finally:
            await nc.close()

    assert asyncio.run(tamper()) == ["stream CDP_EVENTS: max_age is 7200.0, wanted 604800.0"]
    code, out = run("central", "streams", *base)
    assert code == 0 and out["done"][0].startswith("updated stream CDP_EVENTS: max_age")


def test_hub_authorization_grants_a_store_only_its_own_subjects(tmp_path):
    fleet = FleetIdentities(tmp_path / "f")
    fleet.add(["s1"])
    text = fleet.auth_conf.read_text()
    assert public_key(fleet.central_seed.read_bytes()) in text
    assert text == hub_authorization(public_key(fleet.central_seed.read_bytes()),
                                     {"s1": public_key(fleet.store_seed("s1").read_bytes())})  # fmt: skip
    for subject in ("cdp.events.s1", "cdp.status.s1", "$JS.API.CONSUMER.MSG.NEXT.CDP_DOWNLINK.store-s1",
                    "$JS.ACK.CDP_DOWNLINK.store-s1.>", "_INBOX_s1.>"):  # fmt: skip
        assert json.dumps(subject) in text
    assert "$JS.API.STREAM" not in text and "CREATE" not in text
    assert (fleet.store_seed("s1").stat().st_mode & 0o777) == 0o600
    with pytest.raises(ValueError, match="store ids"):
        fleet.add(["bad.id"])
