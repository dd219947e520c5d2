"""The Segment-compatible HTTP sink: wire format, status handling, and a real receiver."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

import httpx
import pytest
from helpers import Spec, expected_ids, fill, mixed_specs
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.journal import Journal
from sync import MIGRATIONS
from sync.config import HttpSinkConfig, SyncConfig
from sync.errors import SinkAuthError, TransientSinkError
from sync.http_sink import HttpSink
from sync.metrics import SyncMetrics
from sync.outbox import Outbox
from sync.sink import OutboundEvent

CONFIG = HttpSinkConfig(enabled=True, base_url="http://cdp.test", write_key="wk")


def events(n: int, start: int = 0) -> list[OutboundEvent]:
    return [OutboundEvent(i, f"id-{i}", json.dumps({"messageId": f"id-{i}", "type": "track"}))
            for i in range(start, start + n)]  # fmt: skip


def run(sink: HttpSink, batch: list[OutboundEvent]):
    async def go():
        async with sink:
            return await sink.send(batch)

    return asyncio.run(go())


def decode(request: httpx.Request) -> dict:
    assert request.headers["content-encoding"] == "gzip"
    return json.loads(gzip.decompress(request.content))


def test_wire_format_auth_gzip_sent_at_and_message_ids():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    sink = HttpSink(CONFIG, transport=httpx.MockTransport(handler), clock=lambda: 1_790_000_000.25)
    result = run(sink, events(3))
    assert result.sent == 3 and not result.rejected
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v1/batch"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    body = decode(request)
    assert body["sentAt"] == "2026-09-21T14:13:20.250Z"
    assert [m["messageId"] for m in body["batch"]] == ["id-0", "id-1", "id-2"]


def test_413_halves_until_it_fits():
    sizes = []

    def handler(request):
        n = len(decode(request)["batch"])
        sizes.append(n)
        return httpx.Response(413 if n > 3 else 200)

    result = run(HttpSink(CONFIG, transport=httpx.MockTransport(handler)), events(10))
    assert result.sent == 10 and not result.rejected
    assert sizes[0] == 10 and max(sizes[1:]) <= 5


@pytest.mark.parametrize("status", [400, 422, 413])
def test_a_permanently_refused_event_is_isolated_and_dead_lettered(status):
    def handler(request):
        ids = [m["messageId"] for m in decode(request)["batch"]]
        return httpx.Response(status, text="nope") if "id-5" in ids else httpx.Response(200)

    result = run(HttpSink(CONFIG, transport=httpx.MockTransport(handler)), events(16))
    assert result.sent == 15
    assert [(r.event.message_id, r.reason) for r in result.rejected] == [("id-5", f"http_{status}")]


def test_auth_errors_pause_or_dead_letter():
    def handler(request):
        return httpx.Response(401)

    with pytest.raises(SinkAuthError):
        run(HttpSink(CONFIG, transport=httpx.MockTransport(handler)), events(4))
    cfg = HttpSinkConfig(enabled=True, base_url="http://cdp.test", write_key="wk", on_auth_error="dead_letter")
    result = run(HttpSink(cfg, transport=httpx.MockTransport(handler)), events(4))
    assert len(result.rejected) == 4 and result.rejected[0].reason == "http_401"


@pytest.mark.parametrize(
    "response,retry_after",
    [(httpx.Response(429, headers={"retry-after": "7"}), 7.0), (httpx.Response(503), None),
     (httpx.Response(500, headers={"retry-after": "x"}), None), (httpx.Response(302), None)],
)  # fmt: skip
def test_transient_statuses_raise_with_retry_after(response, retry_after):
    with pytest.raises(TransientSinkError) as info:
        run(HttpSink(CONFIG, transport=httpx.MockTransport(lambda r: response)), events(2))
    assert info.value.retry_after_s == retry_after


def test_timeouts_and_connection_errors_are_transient():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    for handler in (timeout, refused):
        with pytest.raises(TransientSinkError):
            run(HttpSink(CONFIG, transport=httpx.MockTransport(handler)), events(2))


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(100, 599),
    headers=st.dictionaries(st.sampled_from(["retry-after", "content-type", "x-y"]), st.text(max_size=40)),
    body=st.binary(max_size=200),
)
def test_fuzz_any_response_is_confirmed_rejected_or_transient(status, headers, body):
    """Only the documented outcomes, whatever the receiver answers."""
    safe_headers = {k: v.encode("ascii", "ignore").decode().replace("\r", "").replace("\n", "")
                    for k, v in headers.items()}  # fmt: skip
    transport = httpx.MockTransport(lambda r: httpx.Response(status, headers=safe_headers, content=body))
    try:
        result = run(HttpSink(CONFIG, transport=transport), events(3))
    except (TransientSinkError, SinkAuthError) as exc:
        assert status not in range(200, 300)
        if isinstance(exc, TransientSinkError) and exc.retry_after_s is not None:
            assert exc.retry_after_s >= 0
        return
    assert result.sent + len(result.rejected) == 3
    assert (result.sent == 3) == (200 <= status < 300)


@pytest.mark.integration
def test_outbox_to_a_real_receiver_with_429_and_bad_event(tmp_path, receiver):
    with Journal(tmp_path / "j.db", synchronous="normal", migrations=MIGRATIONS) as journal:
        evs = fill(journal, mixed_specs(3000) + [Spec("Audience Measured")])
        bad = evs[-1].message_id
        receiver.control(status=429, count=2, retry_after="0")
        receiver.control(reject_ids=[bad])
        config = HttpSinkConfig(enabled=True, base_url=receiver.url, write_key=receiver.write_key)
        sleeps = []

        async def sleep(s):
            sleeps.append(s)

        box = Outbox(journal, SyncConfig(), lambda u: True, SyncMetrics(), sleep=sleep)
        asyncio.run(box.run_sink("http", lambda: HttpSink(config), until_caught_up=True))
        assert len(sleeps) == 2
        assert set(receiver.received_ids()) == expected_ids(evs) - {bad}
        assert receiver.stats()["receipts"] == receiver.stats()["distinct"]
        assert [d["reason"] for d in journal.dead_letters()] == ["http_400"]


def test_an_endpoint_refusing_everything_costs_a_bounded_number_of_requests():
    from sync.http_sink import MAX_SPLIT_REQUESTS

    sink = HttpSink(CONFIG, transport=httpx.MockTransport(lambda r: httpx.Response(400)))
    result = run(sink, events(2500))
    assert result.sent == 0 and len(result.rejected) == 2500
    assert sink.requests <= MAX_SPLIT_REQUESTS + 1
