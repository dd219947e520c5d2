"""The centre's JetStream backbone: streams and consumers it creates, verifies and scrubs.

Stores create nothing (see :mod:`sync.identities`); ``edge central streams`` runs
:func:`ensure_backbone` with the centre's identity:

=============== ================ ==========================================================
stream          subjects         limits (``central.*`` keys)
=============== ================ ==========================================================
``CDP_EVENTS``  ``cdp.events.>`` replicas, ``events_max_age_days``, ``events_max_bytes``,
                                 discard **new** (a full stream refuses publishes; the stores'
                                 outboxes keep the events — nothing acknowledged is dropped),
                                 ``duplicate_window_s``
``CDP_DOWNLINK`` ``cdp.downlink.>`` interest retention: a message is removed once the store it
                                 is addressed to acked it (erasure requests and consent
                                 changes naming a person do not linger); ``downlink_max_age_days``
``CDP_STATUS``  ``cdp.status.>``  store health reports for rollouts and ``edge central status``;
                                 last 16 per store, 30 days
=============== ================ ==========================================================

Consumers: ``central`` (durable pull over ``cdp.events.>``, shared by every worker of the
central job) and ``store-{id}`` per store on ``cdp.downlink.{id}``.

:func:`delete_person_messages` scans a stream with an ephemeral consumer and deletes (the
server overwrites them) the messages whose ``userId`` is one of the given tokens.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from sync.config import CentralConfig

__all__ = [
    "DOWNLINK_STREAM",
    "EVENTS_STREAM",
    "STATUS_STREAM",
    "Backbone",
    "delete_person_messages",
    "ensure_backbone",
    "verify_backbone",
]

EVENTS_STREAM, DOWNLINK_STREAM, STATUS_STREAM = "CDP_EVENTS", "CDP_DOWNLINK", "CDP_STATUS"
DAY_S = 86_400.0


@dataclass(frozen=True)
class Backbone:
    """The streams and consumers the centre owns, derived from its configuration."""

    config: CentralConfig

    def streams(self) -> list[StreamConfig]:
        c = self.config
        file, replicas = StorageType.FILE, c.replicas
        return [
            StreamConfig(
                name=EVENTS_STREAM, subjects=["cdp.events.>"], retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.NEW, max_age=c.events_max_age_days * DAY_S,
                max_bytes=c.events_max_bytes, duplicate_window=c.duplicate_window_s, storage=file, num_replicas=replicas,
            ),
            StreamConfig(
                name=DOWNLINK_STREAM, subjects=["cdp.downlink.>"],
                retention=RetentionPolicy.INTEREST, max_age=c.downlink_max_age_days * DAY_S,
                max_bytes=-1,
                duplicate_window=c.duplicate_window_s, max_msg_size=8 * 1024 * 1024, storage=file,
                num_replicas=replicas,
            ),
            StreamConfig(
                name=STATUS_STREAM, subjects=["cdp.status.>"], retention=RetentionPolicy.LIMITS,
                max_age=30 * DAY_S, max_msgs_per_subject=16, max_bytes=-1, duplicate_window=120,
                storage=file, num_replicas=replicas,
            ),
        ]  # fmt: skip

    def central_consumer(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.config.durable, filter_subject="cdp.events.>",
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=20_000, ack_wait=self.config.ack_wait_s,
        )  # fmt: skip

    @staticmethod
    def store_consumer(store_id: str) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=f"store-{store_id}", filter_subject=f"cdp.downlink.{store_id}",
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=64, ack_wait=300,
        )  # fmt: skip


_CHECKED = ("subjects", "retention", "discard", "num_replicas", "max_age", "max_bytes",
            "duplicate_window", "max_msgs_per_subject")  # fmt: skip


async def ensure_backbone(js: JetStreamContext, config: CentralConfig, stores: Iterable[str]) -> list[str]:
    """Create or update the streams, the central consumer and one consumer per store.

    Returns what was done, one line each (``created stream CDP_EVENTS`` …).
    """
    backbone = Backbone(config)
    done = []
    for wanted in backbone.streams():
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(wanted)
            done.append(f"created stream {wanted.name}")
            continue
        if _differences(info.config, wanted):
            if info.config.retention != wanted.retention:
                raise ValueError(
                    f"stream {wanted.name} has retention {info.config.retention}, the backbone"
                    f" needs {wanted.retention}; it cannot be changed in place: move the data"
                    " and delete the stream first"
                )
            await js.update_stream(wanted)
            done.append(f"updated stream {wanted.name}: {', '.join(_differences(info.config, wanted))}")
    wanted_consumers = [(EVENTS_STREAM, backbone.central_consumer())]
    wanted_consumers += [(DOWNLINK_STREAM, Backbone.store_consumer(s)) for s in stores]
    for stream, consumer in wanted_consumers:
        assert consumer.durable_name is not None
        try:
            await js.consumer_info(stream, consumer.durable_name)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(stream, consumer)
            done.append(f"created consumer {stream}/{consumer.durable_name}")
    return done


async def verify_backbone(js: JetStreamContext, config: CentralConfig, stores: Iterable[str]) -> list[str]:
    """What differs from the backbone the configuration describes ([] when all is right)."""
    backbone = Backbone(config)
    problems = []
    for wanted in backbone.streams():
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except nats.js.errors.NotFoundError:
            problems.append(f"stream {wanted.name} is missing")
            continue
        problems += [f"stream {wanted.name}: {d}" for d in _differences(info.config, wanted)]
    names = [(EVENTS_STREAM, config.durable)] + [(DOWNLINK_STREAM, f"store-{s}") for s in stores]
    for stream, name in names:
        try:
            await js.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            problems.append(f"consumer {stream}/{name} is missing")
    return problems


def _differences(have: StreamConfig, wanted: StreamConfig) -> list[str]:
    out = []
    for key in _CHECKED:
        a, b = getattr(have, key), getattr(wanted, key)
        if isinstance(b, float) or isinstance(a, float):
            same = abs(float(a or 0) - float(b or 0)) < 1e-3
        else:
            same = a == b
        if not same:
            out.append(f"{key} is {a!r}, wanted {b!r}")
    return out


async def delete_person_messages(
    js: JetStreamContext,
    stream: str,
    subjects: str,
    user_ids: Collection[str],
    *,
    batch: int = 1000,
) -> int:
    """Delete every message in ``stream`` (over ``subjects``) whose JSON body has ``userId`` in ``user_ids``.

    One pass with an ephemeral, unacknowledged pull consumer from the first message: O(stream
    size), which :func:`ensure_backbone` bounds by ``max_age``. Returns how many were deleted.
    """
    if not user_ids:
        return 0
    needles = [json.dumps(u).encode() for u in user_ids]
    sub = await js.pull_subscribe(
        subjects, stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                              inactive_threshold=60, mem_storage=True, num_replicas=1),
    )  # fmt: skip
    found: list[int] = []
    try:
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for m in msgs:
                if any(n in m.data for n in needles) and _user_of(m.data) in user_ids:
                    found.append(m.metadata.sequence.stream)
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    for seq in found:
        try:
            await js.delete_msg(stream, seq)
        except nats.js.errors.NotFoundError:  # aged out or deleted meanwhile
            pass
    return len(found)


def _user_of(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    user = body.get("userId") if isinstance(body, dict) else None
    return user if isinstance(user, str) else None
