"""Segment-compatible HTTP batch sink: ``POST {base}/v1/batch``.

Body ``{"batch": [...], "sentAt": ...}`` built from the journaled JSON without re-encoding,
gzip, Basic auth with the write key as user name and an empty password. Status handling:

* 2xx → confirmed.
* 400 / 413 / 422 → permanent for this content: the batch is halved and each half resent, down
  to single events; a single event still refused is dead-lettered with ``http_<status>``. One
  bad event costs about 2·log2(batch) extra requests and no good event is lost; at most
  :data:`MAX_SPLIT_REQUESTS` extra requests per batch, after which what is still refused is
  dead-lettered whole (an endpoint that refuses everything cannot multiply the traffic).
* 401 / 403 → :class:`SinkAuthError` (the outbox pauses the sink) or, with
  ``on_auth_error = "dead_letter"``, the batch is dead-lettered.
* 408, 429, 5xx, timeouts, connection errors → :class:`TransientSinkError` with Retry-After.
* anything else (3xx, other 4xx) → transient: never silently drop on a status we do not know.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import httpx

from edge.backoff import parse_retry_after
from sync.config import HttpSinkConfig
from sync.errors import SinkAuthError, TransientSinkError
from sync.sink import OutboundEvent, Rejected, SendResult

__all__ = ["HttpSink", "batch_body", "iso_now"]

_SPLIT = frozenset({400, 413, 422})
#: Extra requests one batch may cost while isolating refused events: enough to find a few bad
#: events in 2,500 (about 2·log2(n) each), bounded when an endpoint refuses everything.
MAX_SPLIT_REQUESTS = 64
_AUTH = frozenset({401, 403})


def iso_now(clock: Callable[[], float] = time.time) -> str:
    now = clock()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def batch_body(events: Sequence[OutboundEvent], sent_at: str) -> bytes:
    inner = ",".join(e.body for e in events)
    return f'{{"batch":[{inner}],"sentAt":"{sent_at}"}}'.encode()


class HttpSink:
    """One HTTP client to the endpoint; ``async with HttpSink(...) as sink``."""

    def __init__(
        self,
        config: HttpSinkConfig,
        *,
        name: str = "http",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.config = config
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._split_budget = MAX_SPLIT_REQUESTS
        self.requests = 0

    async def __aenter__(self) -> HttpSink:
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/"),
            auth=httpx.BasicAuth(self.config.write_key, ""),
            timeout=httpx.Timeout(self.config.timeout_s),
            transport=self._transport,
            headers={"content-type": "application/json", "user-agent": "edge-gateway-sync/1"},
        )
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, events: Sequence[OutboundEvent]) -> SendResult:
        rejected: list[Rejected] = []
        self._split_budget = MAX_SPLIT_REQUESTS
        sent = await self._send_split(list(events), rejected)
        return SendResult(sent=sent, rejected=tuple(rejected))

    async def _send_split(self, events: list[OutboundEvent], rejected: list[Rejected]) -> int:
        status, detail = await self._post(events)
        if 200 <= status < 300:
            return len(events)
        if status in _SPLIT and len(events) > 1 and self._split_budget >= 2:
            self._split_budget -= 2
            half = len(events) // 2
            return await self._send_split(events[:half], rejected) + await self._send_split(events[half:], rejected)
        if status in _SPLIT or (status in _AUTH and self.config.on_auth_error == "dead_letter"):
            rejected.extend(Rejected(e, f"http_{status}", detail) for e in events)
            return 0
        if status in _AUTH:
            raise SinkAuthError(
                f"{self.config.base_url} refused the write key (HTTP {status}); set"
                " sync_http.write_key — events stay queued"
            )
        raise TransientSinkError(f"HTTP {status} from {self.config.base_url}")

    async def _post(self, events: list[OutboundEvent]) -> tuple[int, str]:
        assert self._client is not None, "use HttpSink as an async context manager"
        body = batch_body(events, iso_now(self._clock))
        headers = {}
        if self.config.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["content-encoding"] = "gzip"
        self.requests += 1
        try:
            response = await self._client.post("/v1/batch", content=body, headers=headers)
        except httpx.TimeoutException as exc:
            what = f"timeout after {self.config.timeout_s}s: {type(exc).__name__}"
            raise TransientSinkError(what) from None
        except httpx.TransportError as exc:
            what = f"cannot reach {self.config.base_url}: {type(exc).__name__}"
            raise TransientSinkError(what) from None
        status = response.status_code
        if status == 429 or status == 408 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._clock())
            raise TransientSinkError(f"HTTP {status} from {self.config.base_url}", retry_after)
        return status, response.text[:200]
