"""Products for the simulator: the default model's catalog if present, else generated ones."""

from __future__ import annotations

import csv
import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Product", "load_products"]

_CATEGORIES = ("dairy", "bakery", "produce", "snacks", "drinks", "household")


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price_cents: int


def default_catalog_path() -> Path | None:
    spec = importlib.util.find_spec("models")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    roots.append(Path("models"))
    return next((r / "default" / "catalog.csv" for r in roots if (r / "default" / "catalog.csv").exists()), None)


def load_products(path: Path | None = None, *, seed: int = 1, generated: int = 60) -> list[Product]:
    path = path or default_catalog_path()
    if path is not None and path.exists():
        with open(path, newline="", encoding="utf-8") as fh:
            products = [
                Product(row["sku"], row["name"], row["category"], round(float(row["price"]) * 100))
                for row in csv.DictReader(fh)
                if row.get("sku")
            ]
        if products:
            return products
    rng = random.Random(seed)
    return [
        Product(f"SIM-{i:04d}", f"Product {i}", rng.choice(_CATEGORIES), rng.randrange(99, 1999))
        for i in range(generated)
    ]
