"""What the signals learn from purchases instead of being configured by hand.

* :class:`RepurchaseCycles` — per category, the typical days between two purchases of it by the
  same person (the median of a bounded reservoir of observed intervals). A person is "due" when
  the days since their last purchase of the category reached its cycle.
* :class:`Complements` — per category, its usual complement: the category most lifted by it in
  completed baskets (lift = P(B | A) / P(B), with a minimum support and confidence).

Both are bounded in memory and rebuilt at start from the journal's ``Order Completed`` events.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable
from itertools import combinations

__all__ = ["Complements", "RepurchaseCycles"]

_DAY_MS = 86_400_000


class RepurchaseCycles:
    def __init__(self, *, min_samples: int = 5, reservoir: int = 256, people: int = 50_000, seed: int = 7) -> None:
        self.min_samples = min_samples
        self.reservoir = reservoir
        self.people = people
        self._intervals: dict[str, list[float]] = {}
        self._seen: dict[str, int] = {}
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()  # (person, category) -> ms
        self._rng = random.Random(seed)
        self._cache: dict[str, float | None] = {}

    def observe(self, person: str, categories: Iterable[str], at_ms: int) -> None:
        for category in set(categories):
            key = (person, category)
            last = self._last.get(key)
            if last is not None and at_ms - last >= _DAY_MS / 2:  # same-day top-ups are not cycles
                self._add(category, (at_ms - last) / _DAY_MS)
            if last is None or at_ms > last:
                self._last[key] = at_ms
            self._last.move_to_end(key)
            while len(self._last) > self.people:
                self._last.popitem(last=False)

    def _add(self, category: str, days: float) -> None:
        bucket = self._intervals.setdefault(category, [])
        seen = self._seen[category] = self._seen.get(category, 0) + 1
        if len(bucket) < self.reservoir:
            bucket.append(days)
        else:
            j = self._rng.randrange(seen)
            if j < self.reservoir:
                bucket[j] = days
        self._cache.pop(category, None)

    def cycle_days(self, category: str) -> float | None:
        """The learnt cycle, or None while fewer than ``min_samples`` intervals were seen."""
        if category in self._cache:
            return self._cache[category]
        bucket = self._intervals.get(category, [])
        value = None
        if len(bucket) >= self.min_samples:
            ordered = sorted(bucket)
            mid = len(ordered) // 2
            value = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        self._cache[category] = value
        return value

    def cycles(self) -> dict[str, float]:
        return {c: v for c in sorted(self._intervals) if (v := self.cycle_days(c)) is not None}


class Complements:
    def __init__(self, *, min_support: int = 20, min_confidence: float = 0.25, min_lift: float = 1.2) -> None:
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.min_lift = min_lift
        self.baskets = 0
        self._single: dict[str, int] = {}
        self._pair: dict[tuple[str, str], int] = {}
        self._cache: dict[str, str | None] = {}

    def observe(self, categories: Iterable[str]) -> None:
        cats = sorted(set(categories))
        if not cats:
            return
        self.baskets += 1
        for c in cats:
            self._single[c] = self._single.get(c, 0) + 1
        for a, b in combinations(cats[:50], 2):
            self._pair[(a, b)] = self._pair.get((a, b), 0) + 1
        self._cache.clear()

    def complement_of(self, category: str) -> str | None:
        if category in self._cache:
            return self._cache[category]
        n_a = self._single.get(category, 0)
        best: tuple[float, str] | None = None
        if n_a >= self.min_support and self.baskets:
            for other, n_b in self._single.items():
                if other == category:
                    continue
                both = self._pair.get((min(category, other), max(category, other)), 0)
                if both < self.min_support:
                    continue
                confidence = both / n_a
                lift = confidence / (n_b / self.baskets)
                if confidence >= self.min_confidence and lift >= self.min_lift:
                    if best is None or (lift, other) > best:
                        best = (lift, other)
        self._cache[category] = best[1] if best else None
        return self._cache[category]

    def pairs(self) -> dict[str, str]:
        return {c: v for c in sorted(self._single) if (v := self.complement_of(c)) is not None}
