"""Feedback and attribution: rows written inside the journal's commit, redemptions emitted after.

* ``Offer Exposed`` (the engine's own event) → one ``exposures`` row per offer, both arms.
* ``Offer Viewed`` / ``Offer Clicked`` with ``properties.decisionId`` → marks the exposure.
* ``Order Completed`` lines (``properties.products = [{sku, quantity, price}]``) → matched to
  exposures of the same person (``userId``) or visit (``anonymousId``) no older than the
  attribution window whose offer names that SKU or its category; each exposure is redeemed at
  most once, holdout exposures too (that is what makes the arms comparable). Each new
  redemption is stored and handed to ``emit`` as an ``Offer Redeemed`` event for the CDP.

:meth:`Attribution.write` runs inside the commit that journals the events (a
:data:`edge.journal.CommitWriter`), so an exposure row exists exactly when its event does, even
across a power cut; :meth:`Attribution.listen` runs after that commit and emits the redemptions
it found (a derived event must not be published for rows that might still roll back).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from edge.errors import InvalidEvent
from edge.events import Event

__all__ = ["Attribution"]


class Attribution:
    def __init__(
        self,
        category_of: Callable[[str], str | None],
        emit: Callable[[Event, list[dict[str, Any]]], None],
        window_ms: int,
    ) -> None:
        self.category_of = category_of
        self.emit = emit
        self.window_ms = window_ms
        # set by write() inside a commit, taken by listen() after it (both on the writer thread);
        # a commit that fails runs no listener, and the next write() starts afresh
        self._redeemed: list[tuple[Event, list[dict[str, Any]]]] = []

    def check(self, event: Event) -> None:
        """The post-stage: refuse (before the commit) an event this writer could not record, so a
        bad ``decisionId`` costs that event, never the feedback rows of its group commit."""
        if event.name not in ("Offer Viewed", "Offer Clicked", "Offer Exposed"):
            return
        props = event.body["properties"]
        for key in ("decisionId", "offerId"):
            value = props.get(key)
            if value is not None and not isinstance(value, str):
                raise InvalidEvent("wrong_type", f"properties.{key} must be a string for {event.name}")
        if event.name == "Offer Exposed":
            offers = props.get("offers", [])
            if not isinstance(offers, list) or not all(isinstance(o, dict) for o in offers):
                raise InvalidEvent("wrong_type", "properties.offers must be an array of objects")

    def write(self, conn: sqlite3.Connection, events: Sequence[Event]) -> None:
        """Inside the commit: exposure rows, feedback marks and redemptions of ``events``."""
        self._redeemed = []
        exposures, feedback, orders = [], [], []
        for event in events:
            if event.name == "Offer Exposed":
                exposures.extend(_exposure_rows(event))
            elif event.name in ("Offer Viewed", "Offer Clicked"):
                if _usable_feedback(event):  # check() refused the rest; a local publisher may skip it
                    feedback.append(event)
            elif event.name == "Order Completed" and (event.user_id or event.anonymous_id):
                orders.append(event)
        if exposures:
            conn.executemany(
                "INSERT OR IGNORE INTO exposures (decision_id, offer_id, experiment, arm,"
                " unit_key, person_key, visit_key, user_id, anonymous_id, device_id, channel,"
                " sku, category, ms, day) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                exposures,
            )
        for event in feedback:
            props = event.body["properties"]
            column = "viewed_ms" if event.name == "Offer Viewed" else "clicked_ms"
            conn.execute(
                f"UPDATE exposures SET {column} = COALESCE({column}, ?) WHERE decision_id = ? AND offer_id = ?",
                (event.received_ms, props.get("decisionId"), props.get("offerId")),
            )
        redeemed = []
        for order in orders:
            lines = self._match(conn, order)
            if lines:
                redeemed.append((order, lines))
        self._redeemed = redeemed

    def listen(self, events: Sequence[Event]) -> None:
        """After the commit: emit the redemptions its :meth:`write` stored."""
        redeemed, self._redeemed = self._redeemed, []
        for order, lines in redeemed:
            self.emit(order, lines)

    def _match(self, conn: Any, order: Event) -> list[dict[str, Any]]:
        props = order.body["properties"]
        lines = [p for p in props.get("products", []) if isinstance(p, dict) and isinstance(p.get("sku"), str)]
        if not lines:
            return []
        since = order.received_ms - self.window_ms
        rows = conn.execute(
            "SELECT e.decision_id, e.offer_id, e.experiment, e.arm, e.unit_key, e.sku, e.category"
            " FROM exposures e LEFT JOIN redemptions r"
            " ON r.decision_id = e.decision_id AND r.offer_id = e.offer_id"
            " WHERE r.decision_id IS NULL AND e.ms BETWEEN ? AND ?"
            " AND (e.user_id = ? OR e.anonymous_id = ?) ORDER BY e.ms, e.decision_id, e.offer_id",
            (since, order.received_ms, order.user_id, order.anonymous_id),
        ).fetchall()
        out = []
        order_id = props.get("orderId") if isinstance(props.get("orderId"), str) else None
        for decision_id, offer_id, experiment, arm, unit, sku, category in rows:
            line = next(
                (
                    ln
                    for ln in lines
                    if ln["sku"] == sku or (category is not None and self.category_of(ln["sku"]) == category)
                ),
                None,
            )
            if line is None:
                continue
            quantity = _number(line.get("quantity"), 1.0)
            revenue = quantity * _number(line.get("price"), 0.0)
            conn.execute(
                "INSERT OR IGNORE INTO redemptions (decision_id, offer_id, experiment, arm,"
                " unit_key, user_id, anonymous_id, order_id, sku, quantity, revenue, ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    decision_id,
                    offer_id,
                    experiment,
                    arm,
                    unit,
                    order.user_id,
                    order.anonymous_id,
                    order_id,
                    line["sku"],
                    quantity,
                    revenue,
                    order.received_ms,
                ),
            )
            out.append(
                {
                    "decisionId": decision_id,
                    "offerId": offer_id,
                    "experiment": experiment,
                    "arm": arm,
                    "sku": line["sku"],
                    "quantity": quantity,
                    "revenue": round(revenue, 2),
                    "orderId": order_id,
                }
            )
        return out


def _exposure_rows(event: Event) -> list[tuple[Any, ...]]:
    props = event.body["properties"]
    rows = []
    for offer in props.get("offers", []):
        if not isinstance(offer, dict):
            continue
        rows.append(
            (
                props.get("decisionId"),
                offer.get("offerId"),
                offer.get("experiment"),
                offer.get("arm"),
                offer.get("unit"),
                props.get("personKey"),
                props.get("visitId"),
                event.user_id,
                event.anonymous_id,
                event.source.device_id,
                event.source.channel,
                offer.get("sku"),
                offer.get("category"),
                props.get("exposedMs", event.received_ms),
                props.get("day", ""),
            )
        )
    return rows


def _usable_feedback(event: Event) -> bool:
    props = event.body["properties"]
    return isinstance(props.get("decisionId"), str) and isinstance(props.get("offerId"), str)


def _number(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default
