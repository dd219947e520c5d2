"""One exception tree for the gateway.

    EdgeError                     base: every error the gateway raises on purpose
    ├── ConfigError               the configuration is invalid; .errors lists (key path, message)
    ├── InvalidEvent              an input was rejected; .reason is a short metric label
    ├── JournalError              the journal cannot be opened, migrated or written
    ├── AuthError                 a caller is unauthenticated (401) or not allowed (403)
    ├── RegistryError             a device registry operation was refused
    └── BrokerError               the MQTT broker could not be started or reached

Every message says what was wrong and, where it helps, what to do. Messages never carry raw
customer identifiers: callers pass only tokens, key paths and reason labels.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BrokerError",
    "ConfigError",
    "EdgeError",
    "InvalidEvent",
    "JournalError",
    "RegistryError",
]


class EdgeError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(EdgeError):
    """The configuration is invalid. ``errors`` holds every (key path, message) found."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = list(errors)
        lines = "; ".join(f"{key}: {message}" for key, message in self.errors)
        super().__init__(f"invalid configuration: {lines}")


class InvalidEvent(EdgeError):
    """An event (or a batch, or a raw payload) was rejected.

    ``reason`` is a short, stable label used in metrics and dead letters (``invalid_json``,
    ``too_large``, ``missing_field`` …); ``detail`` says which field and why.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class JournalError(EdgeError):
    """The journal cannot be opened, migrated or written."""


class AuthError(EdgeError):
    """A caller is unauthenticated (status 401) or not allowed (status 403)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


class RegistryError(EdgeError):
    """A device registry operation was refused (unknown kind, duplicate id …)."""


class BrokerError(EdgeError):
    """The MQTT broker could not be started or reached."""
