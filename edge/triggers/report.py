"""The test-and-learn report: per trigger, version and variant — fired, delivered, held out,
conversions, uplift over the holdout with its always-valid interval (CUPED on the pre-period
spend where known), probability to be best, and a verdict. Every version stays in the table,
so iterations can be compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from edge import stats
from edge.triggers.delivery import iso
from edge.triggers.tables import FiringStore

__all__ = ["report", "report_rows", "format_report"]

_MEASURED = (
    "delivered",
    "holdout",
    "no_offer",
)  # intention to treat: a variant firing counts even if nothing was shown


def report(store: FiringStore, now_ms: int, *, alpha: float = 0.05, tau: float = stats.DEFAULT_TAU) -> dict[str, Any]:
    return report_rows(store.rows(), store.promotions(), now_ms, alpha=alpha, tau=tau)


def report_rows(
    rows: Sequence[tuple[Any, ...]],
    promotions: dict[tuple[str, int], tuple[str, float, int]],
    now_ms: int,
    *,
    alpha: float = 0.05,
    tau: float = stats.DEFAULT_TAU,
) -> dict[str, Any]:
    groups: dict[tuple[str, int], dict[str, list[tuple[bool, bool, float | None, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for trigger_id, version, arm, delivered, outcome, converted, pre_spend in rows:
        groups[(trigger_id, int(version))][arm].append((bool(delivered), bool(converted), pre_spend, outcome))
    out = []
    for (tid, version), arms in sorted(groups.items()):
        hold = [r for r in arms.get("holdout", []) if r[3] in _MEASURED]
        variants = {a: [r for r in rs if r[3] in _MEASURED] for a, rs in sorted(arms.items()) if a != "holdout"}
        # CUPED: one θ for the whole trigger version, from every measured unit
        ys = [float(r[1]) for rs in [hold, *variants.values()] for r in rs]
        xs = [r[2] for rs in [hold, *variants.values()] for r in rs]
        use_cuped = sum(x is not None for x in xs) >= max(stats.MIN_UNITS, len(xs) // 2)
        adjusted, theta, rho = stats.cuped(ys, xs) if use_cuped else (ys, 0.0, 0.0)
        it = iter(adjusted)
        hold_y = [next(it) for _ in hold]
        var_y = {a: [next(it) for _ in rs] for a, rs in variants.items()}
        counts = {a: (len(rs), sum(r[1] for r in rs)) for a, rs in variants.items()}
        p_best = stats.prob_best(counts) if counts else {}
        per_alpha = alpha / max(1, len(variants))  # family-wise over the variants
        control = stats.Sample.of(hold_y) if use_cuped else stats.Sample.binary(len(hold), sum(r[1] for r in hold))
        promoted = promotions.get((tid, version))
        rows_out = []
        for a in variants:
            n, c = counts[a]
            treat = stats.Sample.of(var_y[a]) if use_cuped else stats.Sample.binary(n, c)
            interval = stats.confidence_sequence(treat, control, alpha=per_alpha, tau=tau)
            pb = p_best.get(a, 0.0)
            verdict = stats.verdict(interval, pb)
            if promoted is not None:
                verdict = "promoted" if promoted[0] == a else "retired"
            rows_out.append(
                {
                    "variant": a,
                    "fired": len(arms[a]),
                    "delivered": sum(r[0] for r in arms[a]),
                    "measured": n,
                    "conversions": c,
                    "conversionRate": round(c / n, 6) if n else None,
                    "uplift": interval.as_json(),
                    "probabilityBest": round(pb, 4),
                    "verdict": verdict,
                }
            )
        hc = sum(r[1] for r in hold)
        out.append(
            {
                "trigger": tid,
                "version": version,
                "promoted": None
                if promoted is None
                else {"variant": promoted[0], "minHoldout": promoted[1], "promotedAt": iso(promoted[2])},
                "heldOut": len(hold),
                "holdoutConversions": hc,
                "holdoutRate": round(hc / len(hold), 6) if hold else None,
                "cuped": {"applied": use_cuped, "theta": round(theta, 6), "rho": round(rho, 6)},
                "alpha": alpha,
                "variants": rows_out,
            }
        )
    return {"generatedAt": iso(now_ms), "triggers": out}


def format_report(doc: dict[str, Any]) -> str:
    lines = [
        f"{'trigger':<28} {'ver':>3} {'variant':<14} {'fired':>6} {'deliv':>6} {'conv':>5} {'rate':>7} "
        f"{'uplift [always-valid 95 %]':<30} {'P(best)':>7}  verdict"
    ]
    for t in doc["triggers"]:
        hr = t["holdoutRate"]
        lines.append(
            f"{t['trigger']:<28} {t['version']:>3} {'(holdout)':<14} {t['heldOut']:>6} {'-':>6} "
            f"{t['holdoutConversions']:>5} {'' if hr is None else f'{hr:.3f}':>7}"
        )
        for v in t["variants"]:
            u = v["uplift"]
            band = "—" if u["low"] is None else f"{u['estimate']:+.3f} [{u['low']:+.3f}, {u['high']:+.3f}]"
            rate = "" if v["conversionRate"] is None else f"{v['conversionRate']:.3f}"
            lines.append(
                f"{'':<28} {'':>3} {v['variant']:<14} {v['fired']:>6} {v['delivered']:>6} "
                f"{v['conversions']:>5} {rate:>7} {band:<30} {v['probabilityBest']:>7.2f}  {v['verdict']}"
            )
    if not doc["triggers"]:
        lines.append("(no firings yet)")
    return "\n".join(lines)
