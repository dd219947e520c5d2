"""The JetStream sink against a real nats-server: stream setup, acks, de-duplication."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.config import NatsSinkConfig
from sync.errors import TransientSinkError
from sync.nats_sink import JetStreamSink, _Acks
from sync.sink import OutboundEvent


def events(n: int) -> list[OutboundEvent]:
    return [OutboundEvent(i, f"id-{i}", json.dumps({"messageId": f"id-{i}", "storeId": "s1"}))
            for i in range(n)]  # fmt: skip


@pytest.mark.integration
def test_publish_acks_duplicates_and_subject(nats_server):
    config = NatsSinkConfig(enabled=True, servers=nats_server.urls)

    async def go():
        async with JetStreamSink(config, "s1") as sink:
            first = await sink.send(events(300))
            again = await sink.send(events(300)[100:])
        nc = await nats.connect(servers=nats_server.urls)
        info = await nc.jetstream().stream_info("CDP_EVENTS", subjects_filter="cdp.events.s1")
        await nc.close()
        return first, again, info

    first, again, info = asyncio.run(go())
    assert (first.sent, first.duplicates) == (300, 0)
    assert (again.sent, again.duplicates) == (0, 200)
    assert info.state.messages == 300 and info.state.subjects == {"cdp.events.s1": 300}
    assert info.config.duplicate_window == 3600  # the centre's default (sync.backbone)


@pytest.mark.integration
def test_without_the_centres_stream_the_sink_says_so_and_creates_nothing(bare_nats_server):
    urls = bare_nats_server.urls

    async def go():
        async with JetStreamSink(NatsSinkConfig(enabled=True, servers=urls, ack_timeout_s=3), "s1") as sink:
            with pytest.raises(TransientSinkError, match="edge central streams"):
                await sink.send(events(3))
        nc = await nats.connect(servers=urls)
        names = await nc.jetstream().streams_info()
        await nc.close()
        return names

    assert asyncio.run(go()) == []


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120) | st.sampled_from([b'{"stream":"S", "seq":1,"duplicate": true}',
                                                        b'{"error":{"code":503}}', b'{"stream":"S","seq":2}']),
       headers=st.sampled_from([None, {}, {"Status": "503"}]))  # fmt: skip
def test_fuzz_publish_acks_settle_the_batch_with_one_outcome(data, headers):
    acks = _Acks()

    async def go() -> bool:
        done = acks.start(1)
        await acks.on_ack(SimpleNamespace(subject=f"_INBOX.abc.{acks.batch}.0", data=data, headers=headers))
        await acks.on_ack(SimpleNamespace(subject="_INBOX.abc.0.0", data=data, headers=headers))  # stale
        return done.done()

    assert asyncio.run(go())
    assert acks.pending == 0 and acks.duplicates + len(acks.errors) <= 1
