"""``edge central train``: the recommender trained on every store's consented purchases.

The purchases are read from PostgreSQL (``Order Completed`` events about a person — every one
of them left its store with ``cdp_sync`` consent; a person who withdrew it since, per
``cdp_consent``, is left out; erased persons are already gone) and written, one row per product
line, into the generic data layout of :mod:`models.data` in a private temporary directory
(pseudonymous tokens only, removed afterwards); then :func:`models.build.train_model` — the
same trainer and hold-out evaluation as ``edge model train`` — writes the model directory for
``edge central publish-model``.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["export_purchases", "train_from_postgres"]

_COLUMNS = ("order_id", "customer_id", "sku", "quantity", "price", "timestamp", "store_id",
            "weather", "zone", "channel")  # fmt: skip
_QUERY = """
SELECT e.message_id, e.user_id, e.store_id, e."timestamp", e.properties, e.context,
       e.body->>'channel'
FROM cdp_events e LEFT JOIN cdp_consent c ON c.user_id = e.user_id
WHERE e.event = 'Order Completed' AND e.user_id IS NOT NULL
  AND coalesce(c.preferences->>'cdp_sync', 'true') <> 'false'
"""


def _lines(row: tuple[Any, ...]) -> Iterable[tuple[Any, ...]]:
    message_id, user, store, timestamp, props, context, channel = row
    order = str(props.get("orderId") or message_id)
    weather = context.get("weather") or props.get("weather") or ""
    zone = props.get("zoneId") or ""
    for product in props.get("products") or []:
        if not isinstance(product, dict) or not isinstance(product.get("sku"), str):
            continue
        yield (order, user, product["sku"], product.get("quantity", 1), product.get("price", 0),
               timestamp, store, weather, zone, channel or "")  # fmt: skip


def export_purchases(dsn: str, out_dir: Path, catalog_csv: Path) -> int:
    """Write ``transactions.csv`` and ``catalog.csv`` into ``out_dir``; returns the lines."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(catalog_csv, out_dir / "catalog.csv")
    count = 0
    with psycopg.connect(dsn) as conn, open(out_dir / "transactions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_COLUMNS)
        with conn.cursor(name="purchases") as cur:  # server-side: months of purchases stream
            cur.execute(_QUERY)
            for row in cur:
                for line in _lines(row):
                    writer.writerow(line)
                    count += 1
    return count


def train_from_postgres(
    dsn: str, catalog_csv: Path, out_dir: Path, *, quiet: bool = True, **train_kwargs: Any
) -> dict[str, Any]:
    """Export, then ``models.build.train_model``; returns the model manifest."""
    from models.build import train_model

    with tempfile.TemporaryDirectory(prefix="central-train-") as tmp:
        export_purchases(dsn, Path(tmp), catalog_csv)
        return train_model(Path(tmp), Path(out_dir), quiet=quiet, **train_kwargs)
