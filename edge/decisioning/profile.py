"""A rolling per-person profile, only for persons who consented to ``personalization``.

Built by a journal listener from committed events whose consent snapshot allows
personalization: recent items (last seen, count), purchases, categories, visits and the last
visit. The recommender's history input comes from :meth:`ProfileStore.purchases` — purchase
events as ``(sku, days_ago)``, which the model's own history kernel turns into recency- and
frequency-aware weights (``Recommender.history_weights``) — or, for a model without a kernel,
from :meth:`ProfileStore.history`, weighting a recent item by ``2^(−age / half-life) ·
(1 + ln count)``. Withdrawing personalization deletes the profile.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edge.events import Event
from edge.journal import Journal

__all__ = ["Profile", "ProfileStore"]

T = TypeVar("T")

#: The gateway's own events say nothing about what the person did.
_DERIVED = frozenset({"Offer Exposed", "Offer Redeemed", "Customer Erased"})
_ITEM_EVENTS = {"Product Viewed": 1, "Product Added": 1, "Product Clicked": 1, "Order Completed": 2}
_DAY_MS = 86_400_000


@dataclass
class Profile:
    user_id: str
    visits: int = 0
    last_seen_ms: int = 0
    last_visit_ms: int = 0
    updated_ms: int = 0
    items: dict[str, list[int]] = field(default_factory=dict)  # sku -> [last_ms, count]
    categories: dict[str, int] = field(default_factory=dict)
    purchases: list[list[Any]] = field(default_factory=list)  # [sku, ms], oldest first

    def as_json(self, limit: int = 20) -> dict[str, Any]:
        recent = sorted(self.items.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
        return {
            "userId": self.user_id,
            "visits": self.visits,
            "lastVisitMs": self.last_visit_ms,
            "recentItems": [{"sku": s, "lastSeenMs": v[0], "count": v[1]} for s, v in recent],
            "categories": dict(sorted(self.categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


class ProfileStore:
    def __init__(
        self,
        journal: Journal,
        category_of: Callable[[str], str | None],
        allowed: Callable[[str], bool],
        *,
        max_items: int = 200,
        visit_gap_ms: int = 45 * 60_000,
        half_life_days: float = 14.0,
        cache_size: int = 5000,
    ) -> None:
        self.journal = journal
        self.category_of = category_of
        self.allowed = allowed
        self.max_items = max_items
        self.visit_gap_ms = visit_gap_ms
        self.half_life_days = half_life_days
        self.cache_size = cache_size
        self._lock = threading.RLock()
        self._profiles: OrderedDict[str, Profile | None] = OrderedDict()  # LRU; None: no profile

    def get(self, user_id: str) -> Profile | None:
        """The profile, from the LRU cache or (one indexed read) the ``profiles`` table."""
        with self._lock:
            if user_id in self._profiles:
                self._profiles.move_to_end(user_id)
                return self._profiles[user_id]
            with self.journal.connection() as conn:
                row = conn.execute(
                    "SELECT user_id, visits, last_seen_ms, last_visit_ms, updated_ms, items,"
                    " categories, purchases FROM profiles WHERE user_id = ?",
                    (user_id,),
                ).fetchone()
            profile = None
            if row is not None:
                uid, visits, seen, visit, updated, items, cats, bought = row
                profile = Profile(
                    uid, visits, seen, visit, updated, json.loads(items), json.loads(cats), json.loads(bought)
                )
            self._remember(user_id, profile)
            return profile

    def _remember(self, user_id: str, profile: Profile | None) -> None:
        self._profiles[user_id] = profile
        self._profiles.move_to_end(user_id)
        while len(self._profiles) > self.cache_size:
            self._profiles.popitem(last=False)

    def known_users(self) -> set[str]:
        with self._lock:
            return {u for u, p in self._profiles.items() if p is not None}

    def purchases(self, user_id: str, now_ms: int) -> list[tuple[str, float]]:
        """Purchase events as ``(sku, days_ago)``, the input of the model's history kernel."""
        profile = self.get(user_id)
        if profile is None:
            return []
        with self._lock:
            return [(sku, max(0.0, (now_ms - ms) / _DAY_MS)) for sku, ms in profile.purchases]

    def history(self, user_id: str, now_ms: int, limit: int) -> list[tuple[str, float]]:
        """Recency-weighted recent items, for a model without a history kernel."""
        profile = self.get(user_id)
        if profile is None:
            return []
        with self._lock:
            items = sorted(profile.items.items(), key=lambda kv: (-kv[1][0], kv[0]))[:limit]
        out = []
        for sku, (last_ms, count) in items:
            age_days = max(0.0, (now_ms - last_ms) / _DAY_MS)
            weight = 2.0 ** (-age_days / self.half_life_days) * (1.0 + math.log(count))
            out.append((sku, round(weight, 6)))
        return out

    # -- the journal listener ------------------------------------------------------------------
    def listen(self, events: Sequence[Event]) -> None:
        changed: dict[str, Profile] = {}
        withdrawn = {
            e.user_id
            for e in events
            if e.name == "Consent Updated" and e.user_id and not e.consent.get("personalization")
        }
        with self._lock:
            for event in events:
                if (
                    event.user_id is None
                    or event.name in _DERIVED
                    or not event.consent.get("personalization")
                    or not self.allowed(event.user_id)  # withdrawn since the event arrived
                ):
                    continue
                profile = self.get(event.user_id) or Profile(event.user_id)
                self._remember(event.user_id, profile)
                self._apply(profile, event)
                changed[event.user_id] = profile
            rows = [
                (
                    p.user_id,
                    p.updated_ms,
                    p.visits,
                    p.last_seen_ms,
                    p.last_visit_ms,
                    json.dumps(p.items, separators=(",", ":")),
                    json.dumps(p.categories, separators=(",", ":")),
                    json.dumps(p.purchases, separators=(",", ":")),
                )
                for p in changed.values()
            ]
            if rows or withdrawn:  # under the lock: retention (prune_with) cannot interleave
                with self.journal.transaction() as conn:
                    conn.executemany("DELETE FROM profiles WHERE user_id = ?", [(u,) for u in withdrawn])
                    conn.executemany(
                        "INSERT OR REPLACE INTO profiles (user_id, updated_ms, visits, last_seen_ms,"
                        " last_visit_ms, items, categories, purchases) VALUES (?,?,?,?,?,?,?,?)",
                        rows,
                    )

    def _apply(self, profile: Profile, event: Event) -> None:
        at = event.received_ms
        if at - profile.last_seen_ms > self.visit_gap_ms:
            profile.visits += 1
            profile.last_visit_ms = at
        profile.last_seen_ms = max(profile.last_seen_ms, at)
        profile.updated_ms = at
        strength = _ITEM_EVENTS.get(event.name or "")
        if strength is None:
            return
        props = event.body.get("properties", {})
        skus = [props.get("sku")]
        if event.name == "Order Completed":
            skus = [p.get("sku") for p in props.get("products", []) if isinstance(p, dict)]
        for sku in skus:
            if not isinstance(sku, str) or not sku:
                continue
            last, count = profile.items.get(sku, (0, 0))
            profile.items[sku] = [max(last, at), count + strength]
            if event.name == "Order Completed":  # when bought, by the till's clock (an upload after an outage)
                bisect.insort(profile.purchases, [sku, event.occurred_ms], key=lambda p: p[1])  # oldest first
            category = self.category_of(sku)
            if category:
                profile.categories[category] = profile.categories.get(category, 0) + 1
        del profile.purchases[: -self.max_items]
        if len(profile.items) > self.max_items:
            keep = sorted(profile.items.items(), key=lambda kv: -kv[1][0])[: self.max_items]
            profile.items = dict(keep)

    def prune_with(self, prune: Callable[[], T]) -> T:
        """Run ``prune`` (retention, on the table) with no listener write in between, then
        forget the cache so no pruned purchase is written back from memory."""
        with self._lock:
            result = prune()
            self._profiles.clear()
        return result

    def drop(self, user_id: str, *, persist: bool = True) -> None:
        """Delete the profile (withdrawal, erasure). ``persist=False`` drops it from memory only
        (the ingest post-stage: the listener deletes the row when the withdrawal commits)."""
        with self._lock:
            self._remember(user_id, None)
        if persist:
            with self.journal.transaction() as conn:
                conn.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))
