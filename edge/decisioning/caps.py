"""Frequency caps and touch-point collisions, from the exposures of today.

Counted exposures include holdout ones: a held-out person "used up" the same slot a treated
person did, so both arms face the same eligibility and the comparison stays fair. State is in
memory (decisions must see the previous decision at once) and rebuilt from the ``exposures``
table at start; it holds one local day and is dropped when the day changes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from edge.decisioning.offers import Offer
from edge.journal import Journal

__all__ = ["CapLedger", "Exposure"]


@dataclass(frozen=True)
class Exposure:
    offer_id: str
    person_key: str | None  # the token (with personalization consent) or the visit
    visit_key: str | None
    device_id: str
    channel: str
    day: str


class CapLedger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day = ""
        self._person: Counter[tuple[str, str]] = Counter()
        self._channel: Counter[tuple[str, str, str]] = Counter()
        self._visit: Counter[tuple[str, str]] = Counter()
        self._shown_on: dict[tuple[str, str], set[str]] = {}

    def load(self, journal: Journal, day: str) -> None:
        with journal.connection() as conn:
            rows = conn.execute(
                "SELECT offer_id, person_key, visit_key, device_id, channel, day FROM exposures WHERE day = ?",
                (day,),
            ).fetchall()
        self.record([Exposure(*row) for row in rows])

    def _roll(self, day: str) -> None:
        if day != self._day:
            self._day = day
            self._person.clear()
            self._channel.clear()
            self._visit.clear()
            self._shown_on.clear()

    def allowed(
        self,
        offer: Offer,
        person_key: str | None,
        visit_key: str | None,
        channel: str,
        device_id: str,
        day: str,
    ) -> str | None:
        """None when ``offer`` may be shown; else the reason it may not."""
        caps = offer.caps
        with self._lock:
            self._roll(day)
            if visit_key is not None:
                devices = self._shown_on.get((visit_key, offer.id), set())
                if devices - {device_id}:
                    return "collision"
                if caps.per_visit and self._visit[(visit_key, offer.id)] >= caps.per_visit:
                    return "cap_visit"
            if person_key is not None:
                if caps.per_person_day and self._person[(person_key, offer.id)] >= caps.per_person_day:
                    return "cap_person_day"
                if caps.per_channel_day and self._channel[(person_key, offer.id, channel)] >= caps.per_channel_day:
                    return "cap_channel_day"
        return None

    def record(self, exposures: Iterable[Exposure]) -> None:
        with self._lock:
            for e in exposures:
                if not self._day:
                    self._roll(e.day)
                if e.day != self._day:
                    continue
                if e.person_key is not None:
                    self._person[(e.person_key, e.offer_id)] += 1
                    self._channel[(e.person_key, e.offer_id, e.channel)] += 1
                if e.visit_key is not None:
                    self._visit[(e.visit_key, e.offer_id)] += 1
                    self._shown_on.setdefault((e.visit_key, e.offer_id), set()).add(e.device_id)

    def forget(self, keys: Iterable[str]) -> None:
        """Erasure: drop every counter keyed by one of ``keys`` (a token, or a visit of it)."""
        prefixes = tuple(keys)

        def hit(key: str) -> bool:
            return any(key == p or key.startswith(p + ":") for p in prefixes)

        with self._lock:
            for counter in (self._person, self._channel, self._visit):
                for key in [k for k in counter if hit(k[0])]:
                    del counter[key]
            for visit in [k for k in self._shown_on if hit(k[0])]:
                del self._shown_on[visit]
