"""Uplift of treatment over holdout, per campaign (experiment), with a 95 % interval.

The unit of analysis is the experiment's unit (person or visit): a unit *converted* when at
least one of its exposures in that campaign was redeemed. Both arms are exposed (holdout
exposures are counterfactual: recorded, not shown), so the arms differ only by the offer.

* absolute uplift ``p_t − p_c`` with the Wald interval
  ``± z·√(p_t(1−p_t)/n_t + p_c(1−p_c)/n_c)``;
* relative uplift ``p_t / p_c − 1`` with the delta-method interval on ``log(p_t / p_c)``
  (absent while either arm has no conversion).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edge.journal import Journal

__all__ = ["CampaignUplift", "format_report", "uplift", "uplift_report"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class CampaignUplift:
    experiment: str
    treatment_units: int
    treatment_conversions: int
    holdout_units: int
    holdout_conversions: int
    treatment_rate: float | None
    holdout_rate: float | None
    absolute_uplift: float | None
    absolute_ci95: tuple[float, float] | None
    relative_uplift: float | None
    relative_ci95: tuple[float, float] | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def uplift(experiment: str, n_t: int, x_t: int, n_c: int, x_c: int) -> CampaignUplift:
    p_t = x_t / n_t if n_t else None
    p_c = x_c / n_c if n_c else None
    absolute = abs_ci = relative = rel_ci = None
    if p_t is not None and p_c is not None:
        absolute = p_t - p_c
        half = Z95 * math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
        abs_ci = (absolute - half, absolute + half)
        if x_t and x_c:
            relative = p_t / p_c - 1
            se = math.sqrt((1 - p_t) / x_t + (1 - p_c) / x_c)
            log_ratio = math.log(p_t / p_c)
            rel_ci = (math.exp(log_ratio - Z95 * se) - 1, math.exp(log_ratio + Z95 * se) - 1)
    return CampaignUplift(experiment, n_t, x_t, n_c, x_c, p_t, p_c, absolute, abs_ci, relative, rel_ci)


def uplift_report(journal: Journal) -> list[CampaignUplift]:
    with journal.connection() as conn:
        units = conn.execute("SELECT experiment, arm, COUNT(DISTINCT unit_key) FROM exposures GROUP BY 1, 2").fetchall()
        conversions = conn.execute(
            "SELECT experiment, arm, COUNT(DISTINCT unit_key) FROM redemptions GROUP BY 1, 2"
        ).fetchall()
    n: dict[tuple[str, str], int] = {(e, a): c for e, a, c in units}
    x: dict[tuple[str, str], int] = {(e, a): c for e, a, c in conversions}
    return [
        uplift(
            exp,
            n.get((exp, "treatment"), 0),
            x.get((exp, "treatment"), 0),
            n.get((exp, "holdout"), 0),
            x.get((exp, "holdout"), 0),
        )
        for exp in sorted({e for e, _ in n})
    ]


def format_report(rows: list[CampaignUplift]) -> str:
    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:+.2f}"

    def rate(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.2f}%"

    lines = [
        f"{'campaign':<24} {'treatment':>18} {'holdout':>18} {'uplift pts':>11} {'95% CI pts':>19} {'relative %':>11}"
    ]
    for r in rows:
        ci = "—" if r.absolute_ci95 is None else f"[{pct(r.absolute_ci95[0])}, {pct(r.absolute_ci95[1])}]"
        lines.append(
            f"{r.experiment[:24]:<24} {rate(r.treatment_rate):>8} of {r.treatment_units:<6}"
            f" {rate(r.holdout_rate):>8} of {r.holdout_units:<6} {pct(r.absolute_uplift):>11}"
            f" {ci:>19} {pct(r.relative_uplift):>11}"
        )
    return "\n".join(lines)
