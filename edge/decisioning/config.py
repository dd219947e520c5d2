"""Configuration sections of the decisioning feature (identity, consent, decisioning, offers).

Every field is documented through :func:`edge.config.doc`; :data:`CONFIG_SECTIONS` is what
:mod:`edge.schema` assembles into the gateway's schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers

from edge.config import doc

__all__ = [
    "CONFIG_SECTIONS",
    "ConsentConfig",
    "DecisioningConfig",
    "IdentityConfig",
    "OffersConfig",
]


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be positive, got {value!r}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be zero or more, got {value!r}"


def _region(value: Any) -> str | None:
    if value in phonenumbers.SUPPORTED_REGIONS:
        return None
    return f"must be an ISO 3166 region code phonenumbers knows (e.g. 'US', 'GB', 'DE'), got {value!r}"


def _share(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be between 0 and 1, got {value!r}"


@dataclass(frozen=True)
class IdentityConfig:
    key_file: Path | None = doc(
        None,
        "File holding the secret HMAC key that turns raw identifiers into customer tokens."
        " Created on first start with mode 0600 (32 random bytes). Empty: `<state_dir>/identity.key`."
        " Keep it outside the repository and back it up: a new key means new tokens for everyone.",
    )
    default_region: str = doc(
        "US",
        "Region assumed for phone numbers written without a country code (ISO 3166 alpha-2).",
        _region,
    )


@dataclass(frozen=True)
class ConsentConfig:
    default_notice_version: str = doc(
        "unknown",
        "Notice version recorded when a consent change does not say which notice was shown.",
    )


@dataclass(frozen=True)
class DecisioningConfig:
    candidates: int = doc(200, "Recommender candidates asked for per decision.", _positive)
    max_offers: int = doc(3, "Offers returned per decision at most (before holdout).", _positive)
    history_half_life_days: float = doc(
        14.0, "Half-life of a profile item's weight in the recommender's history input.", _positive
    )
    history_items: int = doc(
        50,
        "Profile items passed as history: those the model's kernel weighs most (no kernel: the most recent).",
        _positive,
    )
    profile_items: int = doc(200, "Items a profile keeps (least recent dropped first).", _positive)
    profile_cache: int = doc(
        5000,
        "Profiles kept in memory (least recently used); the rest are read from the journal file.",
        _positive,
    )
    visit_gap_minutes: float = doc(45.0, "A person's events further apart than this start a new visit.", _positive)
    zone_weight: float = doc(1.5, "Context weight of an offer whose `zones` include the requester's zone.", _positive)
    attribution_window_hours: float = doc(
        24.0,
        "An `Order Completed` line redeems an exposure of a matching offer at most this long before.",
        _positive,
    )
    timezone_offset_minutes: int = doc(
        0,
        "Store local time minus UTC, for offer hours/days and daily caps.",
        lambda v: None if -840 <= v <= 840 else "must be between -840 and 840",
    )
    exposure_ack: bool = doc(
        False,
        "Answer a decision only after its `Offer Exposed` event is committed to the journal (one"
        " journal flush in every decision's latency). Off: the event is queued before the answer"
        " and committed right after, so a power cut in that instant can lose an exposure record.",
    )
    redeemed_queue: int = doc(
        10_000,
        "Derived events (`Offer Exposed`, `Offer Redeemed`) waiting to be journaled at most;"
        " past it exposures are journaled before the answer and redemptions dropped and counted.",
        _positive,
    )
    default_holdout: float = doc(0.0, "Holdout share for offers whose experiment does not set one.", _share)


@dataclass(frozen=True)
class OffersConfig:
    path: Path | None = doc(
        None,
        "The offer catalog (TOML, see edge/decisioning/OFFERS.md). Empty: the demo store's catalog shipped"
        " with the gateway (edge/decisioning/demo_offers.toml).",
    )
    reload_seconds: float = doc(2.0, "How often the offer file's modification time is checked for a reload.", _positive)
    minimum_stock: int = doc(1, "Offers on a SKU whose known stock is below this are not applicable.", _non_negative)


CONFIG_SECTIONS: dict[str, type] = {
    "identity": IdentityConfig,
    "consent": ConsentConfig,
    "decisioning": DecisioningConfig,
    "offers": OffersConfig,
}
