"""Transactions → baskets: the one in-memory shape every trainer, baseline and metric reads.

The generic layout (``models/README.md``) is one CSV row per basket line::

    order_id,customer_id,sku,quantity,price,timestamp,store_id[,weather][,zone][,channel]

``timestamp`` is ISO-8601 store-local time. The optional columns fill the context; absent they
mean "unknown". Lines whose sku is not in the catalog and lines with quantity ≤ 0 (returns) are
skipped and counted, not errors: a catalog may lag the till. Anything malformed is a DataError.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .catalog import Catalog, load_catalog
from .context import Context, encode_contexts
from .csvfile import parse_float, parse_int, parse_timestamp, read_tuples
from .errors import DataError

__all__ = ["Dataset", "Line", "build_dataset", "load_dataset", "load_transactions"]

TRANSACTION_COLUMNS = ("order_id", "customer_id", "sku", "quantity", "price", "timestamp", "store_id")
OPTIONAL_COLUMNS = ("weather", "zone", "channel")
EPOCH = datetime(1970, 1, 1)


Line = tuple[str, str, int, datetime, str, "str | None", str]
"""One parsed basket line, whatever the source layout:
(order_id, customer_id, item index, store-local time, weather, zone, channel)."""


@dataclass(frozen=True)
class Dataset:
    """Baskets in CSR form, sorted by (customer, time). Item ids index ``catalog``."""

    catalog: Catalog
    customer_ids: list[str]
    order_ids: list[str]
    customer: np.ndarray  # [n_baskets] int32, index into customer_ids
    time: np.ndarray  # [n_baskets] int64 seconds since 1970 (store-local)
    contexts: list[Context]
    indptr: np.ndarray  # [n_baskets + 1] int64
    items: np.ndarray  # [nnz] int32, unique within a basket
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def n_baskets(self) -> int:
        return len(self.order_ids)

    @property
    def n_items(self) -> int:
        return len(self.catalog)

    def basket(self, b: int) -> np.ndarray:
        return self.items[self.indptr[b] : self.indptr[b + 1]]

    def context_matrix(self) -> np.ndarray:
        return encode_contexts(self.contexts)

    def subset(self, keep: np.ndarray) -> Dataset:
        """The baskets where ``keep`` (bool [n_baskets]) is true, order preserved."""
        idx = np.flatnonzero(keep)
        sizes = np.diff(self.indptr)[idx]
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        parts = [self.items[self.indptr[b] : self.indptr[b + 1]] for b in idx]
        items = np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        return Dataset(
            self.catalog,
            self.customer_ids,
            [self.order_ids[b] for b in idx],
            self.customer[idx],
            self.time[idx],
            [self.contexts[b] for b in idx],
            indptr,
            items,
            dict(self.skipped),
        )

    def last_basket_mask(self) -> np.ndarray:
        """True for each customer's last basket (baskets are sorted by customer, then time)."""
        last = np.ones(self.n_baskets, dtype=bool)
        last[:-1] = self.customer[1:] != self.customer[:-1]
        return last


def build_dataset(catalog: Catalog, lines: Iterable[Line], skipped: dict[str, int]) -> Dataset:
    """Group lines into baskets (by order id) and sort them by customer and time."""
    heads: dict[str, Line] = {}
    members: dict[str, set[int]] = {}
    for line in lines:
        order = line[0]
        found = members.get(order)
        if found is None:
            heads[order] = line
            members[order] = {line[2]}
        else:
            found.add(line[2])
    customer_ids = sorted({head[1] for head in heads.values()})
    cust_index = {c: i for i, c in enumerate(customer_ids)}
    keyed = sorted(heads, key=lambda o: (cust_index[heads[o][1]], heads[o][3], o))
    sizes = np.array([len(members[o]) for o in keyed], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = [i for o in keyed for i in sorted(members[o])]
    firsts = [heads[o] for o in keyed]
    return Dataset(
        catalog=catalog,
        customer_ids=customer_ids,
        order_ids=keyed,
        customer=np.array([cust_index[f[1]] for f in firsts], dtype=np.int32),
        time=np.array([int((f[3] - EPOCH).total_seconds()) for f in firsts], np.int64),
        contexts=[Context(f[3].hour, f[3].weekday(), f[4], f[5], f[6]) for f in firsts],
        indptr=indptr,
        items=np.array(flat, dtype=np.int32),
        skipped=skipped,
    )


def load_transactions(path: Path, catalog: Catalog) -> Dataset:
    """Read a generic-layout transactions.csv against ``catalog``."""
    skipped = {"unknown_sku": 0, "non_positive_quantity": 0}
    stamps: dict[str, datetime] = {}
    orders: dict[str, tuple[str, str]] = {}
    index = catalog.index

    def lines() -> Iterable[Line]:
        for line, row in read_tuples(path, TRANSACTION_COLUMNS, OPTIONAL_COLUMNS):
            order, customer, sku, qty, price, text, _store, weather, zone, channel = row
            if not order or not customer or not sku:
                raise DataError(path, line, "order_id, customer_id and sku must be non-empty")
            try:
                quantity = int(qty)
            except ValueError:
                quantity = parse_int(path, line, "quantity", qty)
            if price and not _is_finite_number(price):
                parse_float(path, line, "price", price)
            stamp = stamps.get(text)
            if stamp is None:
                stamp = stamps[text] = parse_timestamp(path, line, text)
            first = orders.setdefault(order, (customer, text))
            if first[0] != customer or first[1] != text:
                raise DataError(path, line, f"order {order!r} changes customer or timestamp mid-order")
            item = index(sku)
            if item is None:
                skipped["unknown_sku"] += 1
                continue
            if quantity <= 0:
                skipped["non_positive_quantity"] += 1
                continue
            yield (order, customer, item, stamp, weather or "unknown", zone or None, channel or "pos")

    return build_dataset(catalog, lines(), skipped)


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def load_dataset(data_dir: Path) -> Dataset:
    """Load ``catalog.csv`` and ``transactions.csv`` from a generic-layout data directory."""
    data_dir = Path(data_dir)
    catalog = load_catalog(data_dir / "catalog.csv")
    dataset = load_transactions(data_dir / "transactions.csv", catalog)
    if dataset.n_baskets == 0:
        raise DataError(data_dir / "transactions.csv", 0, "no usable baskets")
    return dataset
