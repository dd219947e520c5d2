"""The product catalog: the order of its rows *is* the model's item index.

A model directory carries its own ``catalog.csv`` in canonical form, and the manifest records the
sha256 of that canonical form, so a model can never be served against a catalog whose rows (and
therefore indices) differ from the one it was trained with.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .csvfile import parse_float, read_rows
from .errors import DataError

__all__ = ["CATALOG_COLUMNS", "Catalog", "CatalogItem", "load_catalog"]

CATALOG_COLUMNS = ("sku", "name", "category", "price", "margin")


@dataclass(frozen=True)
class CatalogItem:
    """One product. ``margin`` is a fraction of price (0.3 = 30 %)."""

    sku: str
    name: str
    category: str
    price: float
    margin: float


class Catalog:
    """An ordered, immutable set of products with O(1) sku → index lookup."""

    def __init__(self, items: list[CatalogItem]) -> None:
        self._items = tuple(items)
        self._index = {item.sku: i for i, item in enumerate(self._items)}
        if len(self._index) != len(self._items):
            raise ValueError("duplicate sku in catalog")
        self.skus: list[str] = [item.sku for item in self._items]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[CatalogItem, ...]:
        return self._items

    @property
    def positions(self) -> Mapping[str, int]:
        """sku → item index (what :meth:`index` looks up); do not modify."""
        return self._index

    def index(self, sku: str) -> int | None:
        """The item index of ``sku``, or None when the catalog does not have it."""
        return self._index.get(sku)

    def item(self, sku: str) -> CatalogItem:
        """The product ``sku``; KeyError when unknown (use :meth:`index` to test)."""
        return self._items[self._index[sku]]

    def canonical_bytes(self) -> bytes:
        """The catalog as the canonical CSV the model directory stores and the manifest hashes."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CATALOG_COLUMNS)
        for it in self._items:
            writer.writerow([it.sku, it.name, it.category, repr(it.price), repr(it.margin)])
        return buffer.getvalue().encode("utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def write(self, path: Path) -> None:
        path.write_bytes(self.canonical_bytes())


def load_catalog(path: Path) -> Catalog:
    """Read ``sku,name,category,price,margin``; malformed rows raise a line-numbered DataError."""
    items: list[CatalogItem] = []
    seen: dict[str, int] = {}
    for line, row in read_rows(path, CATALOG_COLUMNS):
        sku = row["sku"]
        if not sku:
            raise DataError(path, line, "sku is empty")
        if sku in seen:
            raise DataError(path, line, f"sku {sku!r} repeats line {seen[sku]}")
        seen[sku] = line
        price = parse_float(path, line, "price", row["price"], allow_empty=True)
        margin = parse_float(path, line, "margin", row["margin"], allow_empty=True)
        if price < 0:
            raise DataError(path, line, f"price {price} is negative")
        items.append(CatalogItem(sku, row["name"], row["category"], price, margin))
    if not items:
        raise DataError(path, 0, "catalog has no products")
    return Catalog(items)
