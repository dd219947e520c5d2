"""Shared pieces of the trigger tests: a real journal with the triggers tables, a trigger
runtime on it, and the simulated shoppers of devices.sim.triggers."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.sim.triggers import OfferInbox
from edge.journal import Journal
from edge.triggers.delivery import OfferPublisher
from edge.triggers.library import Library, parse_library
from edge.triggers.runtime import TriggerRuntime
from edge.triggers.tables import MIGRATIONS, FiringStore

CATEGORIES = ("dairy", "bakery", "produce", "snacks", "beverages")


class Catalog:
    """SKU → category/price, the shape of models.catalog (SKU00000 … SKU00049)."""

    def category_of(self, sku: str) -> str | None:
        try:
            return CATEGORIES[int(sku[3:]) % len(CATEGORIES)]
        except (ValueError, IndexError):
            return None

    def price_of(self, sku: str) -> float:
        return 1.0 + int(sku[3:]) % 7


@dataclass
class Consent:
    """Who has personalization consent (the decisioning ledger in the gateway tests)."""

    allowed: set[str] = field(default_factory=set)

    def allows(self, user_id: str | None, purpose: str) -> bool:
        return user_id in self.allowed

    def is_suppressed(self, user_id: str | None) -> bool:
        return False


def library(text: str) -> Library:
    return parse_library(tomllib.loads(text))


def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.db", synchronous="normal", migrations=MIGRATIONS)


def runtime(tmp_path: Path, text: str, **kwargs: Any) -> tuple[TriggerRuntime, OfferInbox, FiringStore]:
    inbox = OfferInbox()
    store = FiringStore(kwargs.pop("journal", None) or journal(tmp_path))
    rt = TriggerRuntime(
        library(text),
        store=store,
        consent=kwargs.pop("consent", Consent()),
        catalog=Catalog(),
        publisher=OfferPublisher(inbox, "sim"),
        store_id="sim",
        **kwargs,
    )
    return rt, inbox, store
