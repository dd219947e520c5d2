"""Errors of the sync package, under the gateway's one tree (edge.errors.EdgeError).

EdgeError
└── SyncError                 base of this package
    ├── TransientSinkError    retry later with backoff (429, 5xx, timeout, connection, no ack)
    ├── SinkAuthError         the sink refused our credentials (401/403): fix the write key
    ├── StreamMismatch        an existing JetStream stream does not cover what we publish
    └── DownlinkRefused       a downlink message is malformed, unsigned or does not fit
"""

from __future__ import annotations

from edge.errors import EdgeError

__all__ = ["DownlinkRefused", "SinkAuthError", "StreamMismatch", "SyncError", "TransientSinkError"]


class SyncError(EdgeError):
    """Base class of sync errors."""


class TransientSinkError(SyncError):
    """A send failed in a way worth retrying; ``retry_after_s`` is the server's wish, if any."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SinkAuthError(SyncError):
    """The sink refused our credentials; events stay queued until the configuration is fixed."""


class StreamMismatch(SyncError):
    """An existing JetStream stream has a configuration we cannot publish into safely."""


class DownlinkRefused(SyncError):
    """A downlink message was refused; ``reason`` is a short label for logs and metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
