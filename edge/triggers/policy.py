"""Contact policy and collision avoidance for pushed offers.

Per trigger: at most ``per_unit_day`` firings a unit a day, ``per_visit`` a visit, and
``cooldown`` between two. Across all triggers: at most the library's ``policy.max_per_visit``
firings a visit, and an offer shown on one touch point in a visit is not pushed to another
one in the same visit (the engine's own caps and collision rule apply too when it chooses).
Holdout firings count like delivered ones, so both arms meet the same policy. In memory, for
the current day only; rebuilt at start from today's firings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge.triggers.library import Trigger

__all__ = ["ContactLedger"]


class ContactLedger:
    def __init__(self, max_per_visit: int = 3) -> None:
        self.max_per_visit = max_per_visit
        self.day = ""
        self._unit_day: dict[tuple[str, str], int] = {}
        self._visit: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], int] = {}
        self._visit_total: dict[str, int] = {}
        self._shown: dict[str, dict[str, str]] = {}  # visit -> offerId -> device it was shown on

    def _roll(self, day: str) -> None:
        if day != self.day:
            self.day = day
            self._unit_day.clear()
            self._visit.clear()
            self._last.clear()  # noqa: E702
            self._visit_total.clear()
            self._shown.clear()  # noqa: E702

    def refusal(self, trigger: Trigger, unit: str, visit: str, day: str, now_ms: int) -> str | None:
        """Why this firing may not happen now (``None``: it may)."""
        self._roll(day)
        c = trigger.contact
        if self._visit_total.get(visit, 0) >= self.max_per_visit:
            return "visit_cap"
        if self._unit_day.get((trigger.id, unit), 0) >= c.per_unit_day:
            return "unit_day_cap"
        if self._visit.get((trigger.id, visit), 0) >= c.per_visit:
            return "trigger_visit_cap"
        last = self._last.get((trigger.id, unit))
        if last is not None and now_ms - last < c.cooldown_ms:
            return "cooldown"
        return None

    def record(self, trigger_id: str, unit: str, visit: str, day: str, now_ms: int) -> None:
        self._roll(day)
        self._unit_day[(trigger_id, unit)] = self._unit_day.get((trigger_id, unit), 0) + 1
        self._visit[(trigger_id, visit)] = self._visit.get((trigger_id, visit), 0) + 1
        self._visit_total[visit] = self._visit_total.get(visit, 0) + 1
        self._last[(trigger_id, unit)] = now_ms

    def without_collisions(
        self, visit: str, device: str, offers: Sequence[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """The offers not already shown on *another* touch point in this visit."""
        shown = self._shown.get(visit, {})
        return [o for o in offers if shown.get(str(o.get("offerId")), device) == device]

    def shown(self, visit: str, device: str, offers: Sequence[Mapping[str, Any]]) -> None:
        seen = self._shown.setdefault(visit, {})
        for o in offers:
            seen.setdefault(str(o.get("offerId")), device)
