"""Experiment arms: a deterministic hash of (unit, experiment) into 10,000 buckets.

The unit is the person's token, or the visit for anonymous persons and visit-level experiments.
Hashing the experiment id together with the unit makes arms sticky for a unit within an
experiment and independent across experiments; no state is kept.
"""

from __future__ import annotations

import hashlib

__all__ = ["BUCKETS", "arm", "bucket"]

BUCKETS = 10_000


def bucket(unit: str, experiment: str) -> int:
    """0 … 9,999, uniform over units, fixed for (unit, experiment)."""
    digest = hashlib.sha256(f"{experiment}\x00{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm(unit: str, experiment: str, holdout: float) -> str:
    """``"holdout"`` for the first ``holdout × 10,000`` buckets, else ``"treatment"``."""
    return "holdout" if bucket(unit, experiment) < round(holdout * BUCKETS) else "treatment"
