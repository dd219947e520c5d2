"""NATS JetStream sink: each event to ``cdp.events.{storeId}`` with ``Nats-Msg-Id`` = messageId.

The stream is the centre's (:mod:`sync.backbone`): the store creates nothing and calls no
JetStream API — it only publishes, which its identity (:mod:`sync.identities`) allows. A batch
is published concurrently (one request per event, replies on one wildcard inbox) and every
publish ack awaited before the outbox confirms. An ack flagged ``duplicate`` is counted; a
missing or failed ack makes the whole batch transient (resending is harmless: the stream
de-duplicates on the id).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from edge.backoff import raise_if_cancelled
from sync.config import NatsSinkConfig
from sync.errors import TransientSinkError
from sync.identities import inbox_prefix
from sync.sink import OutboundEvent, SendResult

__all__ = ["EVENTS_SUBJECTS", "JetStreamSink", "close_quietly", "connect", "events_subject"]

EVENTS_SUBJECTS = "cdp.events.>"


def events_subject(store_id: str) -> str:
    return f"cdp.events.{store_id}"


async def connect(servers: Sequence[str], credentials: str = "", name: str = "edge-sync", store_id: str = "") -> Client:
    """Connect once; reconnection is the caller's loop. Vendor errors become TransientSinkError.

    ``credentials`` is an nkey seed file (``SU…``) or a ``.creds`` file; with ``store_id`` the
    replies come on the store's own inbox prefix, the only one its identity may subscribe to.
    """
    options: dict[str, Any] = {
        "servers": list(servers),
        "name": name,
        "connect_timeout": 3,
        "allow_reconnect": True,
        "max_reconnect_attempts": 5,
        "reconnect_time_wait": 0.5,
    }
    if credentials:
        options.update(_credential_option(credentials))
    if store_id:
        options["inbox_prefix"] = inbox_prefix(store_id)

    async def _quiet(_exc: Exception) -> None:  # nats-py logs to stderr otherwise
        return None

    options["error_cb"] = _quiet
    try:
        return await nats.connect(**options)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        what = f"cannot connect to NATS {list(servers)}: {type(exc).__name__}"
        raise TransientSinkError(what) from None


async def close_quietly(nc: Client) -> None:
    """Close ``nc``, whatever state the link is in. nats-py can let a CancelledError of its own
    (a transport waiter cancelled as a dead connection is torn down) escape from close(); only a
    cancellation of *our* task may propagate, or one lost node would end the caller's loop."""
    try:
        async with asyncio.timeout(5):
            await nc.close()
    except (TimeoutError, nats.errors.Error, OSError):
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    # close() awaits its own tasks inside ``except (CancelledError, TimeoutError): pass``: a
    # cancellation of ours that arrives there returns here as a normal close
    raise_if_cancelled()


def _credential_option(path: str) -> dict[str, str]:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise TransientSinkError(f"cannot read NATS credentials {path}: {exc.strerror}") from None
    return {"nkeys_seed": path} if head == b"SU" else {"user_credentials": path}


class _Acks:
    """Collects the publish acks of the batch in flight on one wildcard reply subscription.

    Cheaper than one future per message (``publish_async``): an ack is matched by its reply
    subject ``<inbox>.<batch>.<index>``; only an ack mentioning ``error`` or ``duplicate`` is
    parsed.
    Acks of an abandoned (timed-out) batch carry an old batch number and are ignored.
    """

    def __init__(self) -> None:
        self.batch = 0
        self.pending = 0
        self.duplicates = 0
        self.errors: list[str] = []
        self.no_stream = False
        self.done: asyncio.Future[None] | None = None

    def start(self, count: int) -> asyncio.Future[None]:
        self.batch += 1
        self.pending, self.duplicates, self.errors, self.no_stream = count, 0, [], False
        self.done = asyncio.get_running_loop().create_future()
        if count == 0:
            self.done.set_result(None)
        return self.done

    async def on_ack(self, msg: Msg) -> None:
        batch = msg.subject.rsplit(".", 2)[-2]
        if batch != str(self.batch) or self.done is None or self.done.done():
            return
        data = msg.data
        status = msg.headers.get("Status") if msg.headers else None
        if status == "503":
            self.no_stream = True
        elif b'"error"' in data or b'"duplicate"' in data:  # rare: only then parse the ack
            try:
                ack = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError):
                ack = {"error": "unparseable publish ack"}
            if not isinstance(ack, dict) or "error" in ack:
                self.errors.append(data[:200].decode("utf-8", "replace"))
            elif ack.get("duplicate") is True:
                self.duplicates += 1
        self.pending -= 1
        if self.pending == 0:
            self.done.set_result(None)


class JetStreamSink:
    def __init__(self, config: NatsSinkConfig, store_id: str, *, name: str = "nats") -> None:
        self.name = name
        self.config = config
        self.store_id = store_id
        self.subject = events_subject(store_id)
        self._nc: Client | None = None
        self._acks = _Acks()
        self._inbox = ""

    async def __aenter__(self) -> JetStreamSink:
        self._nc = await connect(self.config.servers, self.config.credentials,
                                 store_id=self.store_id)  # fmt: skip
        try:
            self._inbox = self._nc.new_inbox()
            await self._nc.subscribe(f"{self._inbox}.>", cb=self._acks.on_ack, pending_msgs_limit=10_000)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._nc is not None:
            await close_quietly(self._nc)
            self._nc = None

    async def send(self, events: Sequence[OutboundEvent]) -> SendResult:
        nc = self._nc
        assert nc is not None, "use JetStreamSink with async with"
        if nc.is_closed:
            raise TransientSinkError("NATS connection closed")
        done = self._acks.start(len(events))
        reply = f"{self._inbox}.{self._acks.batch}."
        subject = self.subject
        try:
            for i, event in enumerate(events):
                await nc.publish(subject, event.body.encode(), reply=f"{reply}{i}",
                                 headers={"Nats-Msg-Id": event.message_id})  # fmt: skip
            async with asyncio.timeout(self.config.ack_timeout_s):
                await asyncio.shield(done)
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            what = f"JetStream publish not acknowledged: {type(exc).__name__}"
            raise TransientSinkError(what) from None
        finally:
            if not done.done():
                done.cancel()
        if self._acks.no_stream:  # also seen briefly while a cluster elects a leader: retry
            raise TransientSinkError(
                f"no JetStream stream answers on {subject}: the centre creates it with"
                " `edge central streams` (stores create nothing)"
            )
        if self._acks.errors:
            raise TransientSinkError(f"JetStream refused a publish: {self._acks.errors[0]}")
        duplicates = self._acks.duplicates
        return SendResult(sent=len(events) - duplicates, duplicates=duplicates)
