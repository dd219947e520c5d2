"""Errors raised by the device layer, under the gateway's one exception tree.

    edge.errors.EdgeError
    └── DeviceError               a store device could not be used
        ├── ParseError            bytes from a device did not follow its protocol; .reason is a label
        ├── DeviceUnavailable     a port, radio or camera is absent, unplugged or failed
        └── TokenRejected         a signed QR sign-in token was refused; .reason is a label

Parsers raise only :class:`ParseError`. Messages name fields and offsets, never raw values:
loyalty numbers and app ids are identifiers and must not reach a log.
"""

from __future__ import annotations

from edge.errors import EdgeError

__all__ = ["DeviceError", "DeviceUnavailable", "ParseError", "TokenRejected"]


class DeviceError(EdgeError):
    """Base class of the device layer's errors."""


class ParseError(DeviceError):
    """Bytes did not follow the device protocol. ``reason`` is a short, stable metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class DeviceUnavailable(DeviceError):
    """A serial port, BLE adapter or camera cannot be opened or stopped working.

    Raised at the connection boundary in place of the vendor's exception; the caller's reconnect
    loop backs off and tries again.
    """


class TokenRejected(DeviceError):
    """A QR sign-in token was refused: ``malformed``, ``bad_signature``, ``expired``,
    ``too_long_lived`` or ``replayed``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"sign-in token refused: {reason}")
