"""The ``[triggers]`` configuration section (see edge/CONFIG.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.config import doc

__all__ = ["CONFIG_SECTIONS", "TriggersConfig"]


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be positive, got {value!r}"


@dataclass(frozen=True)
class TriggersConfig:
    path: str = doc(
        "",
        "The trigger library (TOML, format in edge/triggers/TRIGGERS.md; check it with"
        " `edge triggers check PATH`). Empty: no triggers. Reloaded on change; a bad file is"
        " refused and the library in force stays.",
    )
    reload_seconds: float = doc(5.0, "How often the library file and promotions are re-read.", _positive)
    max_units: int = doc(
        50_000,
        "Live units (people, visits) whose signal state is kept in memory; the"
        " least recently active beyond this are dropped (counted).",
        _positive,
    )
    idle_minutes: float = doc(45.0, "A unit with no event for this long and nothing pending is forgotten.", _positive)
    late_minutes: float = doc(
        30.0,
        "A signal whose firing was missed (the gateway was down) still fires at"
        " recovery if it is at most this old; older ones are counted and dropped.",
        _positive,
    )
    replay_hours: float = doc(
        6.0,
        "At start, events of the last N hours (at most) are replayed to rebuild pending sequences and timers.",
        _positive,
    )
    learn_days: int = doc(
        120, "At start, completed orders of the last N days teach repurchase cycles and basket complements.", _positive
    )
    pre_period_days: int = doc(
        30, "The person's spend over this many days before a firing is the CUPED covariate.", _positive
    )
    queue_max: int = doc(
        20_000,
        "Committed-event batches waiting for evaluation; beyond this new batches"
        " are dropped for triggers only (counted; ingest is never slowed).",
        _positive,
    )
    alpha: float = doc(
        0.05,
        "Error rate of the always-valid uplift intervals (family-wise per trigger).",
        lambda v: None if 0 < v < 0.5 else "must be in (0, 0.5)",
    )
    tau: float = doc(
        0.05,
        "Mixing scale of the mSPRT prior (the effect size, in conversion-rate points, at"
        " which the interval is tightest).",
        _positive,
    )


CONFIG_SECTIONS: dict[str, type] = {"triggers": TriggersConfig}
