"""Store-and-forward sync to the CDP: outbox, sinks (HTTP batch, NATS JetStream), downlink,
quota, and the central sync job. See sync/README.md."""

from sync.backoff import backoff_delay, parse_retry_after
from sync.config import CONFIG_SECTIONS
from sync.downlink import Downlink, DownlinkHandlers, OffersFile
from sync.errors import (
    DownlinkRefused,
    SinkAuthError,
    StreamMismatch,
    SyncError,
    TransientSinkError,
)
from sync.http_sink import HttpSink
from sync.nats_sink import JetStreamSink
from sync.outbox import Outbox, StillAllowed
from sync.policy import DROP_TIERS, eligible, tier_of
from sync.quota import enforce_quota
from sync.tables import MIGRATIONS

__all__ = [
    "CONFIG_SECTIONS",
    "DROP_TIERS",
    "MIGRATIONS",
    "Downlink",
    "DownlinkHandlers",
    "DownlinkRefused",
    "HttpSink",
    "JetStreamSink",
    "OffersFile",
    "Outbox",
    "SinkAuthError",
    "StillAllowed",
    "StreamMismatch",
    "SyncError",
    "TransientSinkError",
    "backoff_delay",
    "eligible",
    "enforce_quota",
    "parse_retry_after",
    "tier_of",
]
