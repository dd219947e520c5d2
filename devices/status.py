"""Log a device failure once when it starts and "recovered" once when it ends."""

from __future__ import annotations

import logging

__all__ = ["TransitionLog"]


class TransitionLog:
    def __init__(self, what: str, logger: logging.Logger) -> None:
        self.what = what
        self.failing = False
        self._log = logger

    def failed(self, reason: str) -> None:
        if not self.failing:
            self._log.warning("%s failed: %s", self.what, reason)
        self.failing = True

    def recovered(self) -> None:
        if self.failing:
            self._log.info("%s recovered", self.what)
        self.failing = False
