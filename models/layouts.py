"""Column mappings for two public retail layouts, read into the same :class:`Dataset`.

* **Instacart** (a directory): ``orders.csv`` (order_id, user_id, eval_set, order_number,
  order_dow, order_hour_of_day, days_since_prior_order), ``order_products__prior.csv`` and/or
  ``order_products__train.csv`` (order_id, product_id, …), ``products.csv`` (product_id,
  product_name, aisle_id, department_id) and optionally ``departments.csv``. The data has no
  dates: each user's timeline starts on 2017-01-01 and advances by ``days_since_prior_order``,
  with ``order_hour_of_day`` as the hour, so recency is exact and weekdays are approximate.
* **UCI Online Retail II** (one CSV): Invoice, StockCode, Description, Quantity, InvoiceDate,
  Price, Customer ID, Country. Cancellations (invoice ``C…``), lines without a customer and
  quantity ≤ 0 are skipped and counted; the catalog is derived from the lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from .catalog import Catalog, CatalogItem
from .csvfile import parse_float, parse_int, read_rows, read_tuples
from .data import Dataset, Line, build_dataset, load_dataset
from .errors import DataError

__all__ = ["LAYOUTS", "load_instacart", "load_layout", "load_online_retail"]

LAYOUTS = ("generic", "instacart", "online_retail")
INSTACART_START = datetime(2017, 1, 1)


def load_instacart(data_dir: Path) -> Dataset:
    """Read an Instacart-layout directory (see module docstring)."""
    data_dir = Path(data_dir)
    departments: dict[str, str] = {}
    if (data_dir / "departments.csv").exists():
        path = data_dir / "departments.csv"
        for _, row in read_rows(path, ("department_id", "department")):
            departments[row["department_id"]] = row["department"]
    items: list[CatalogItem] = []
    seen: set[str] = set()
    path = data_dir / "products.csv"
    for line, row in read_rows(path, ("product_id", "product_name", "aisle_id", "department_id")):
        if not row["product_id"] or row["product_id"] in seen:
            raise DataError(path, line, "product_id is empty or repeated")
        seen.add(row["product_id"])
        dept = row["department_id"]
        items.append(CatalogItem(row["product_id"], row["product_name"],
                                 departments.get(dept, dept), 0.0, 0.0))
    if not items:
        raise DataError(path, 0, "no products")
    catalog = Catalog(items)

    path = data_dir / "orders.csv"
    orders: dict[str, tuple[str, int, int, float]] = {}
    for line, row in read_rows(path, ("order_id", "user_id", "order_number", "order_dow",
                                      "order_hour_of_day", "days_since_prior_order")):
        if not row["order_id"] or not row["user_id"]:
            raise DataError(path, line, "order_id and user_id must be non-empty")
        number = parse_int(path, line, "order_number", row["order_number"])
        hour = parse_int(path, line, "order_hour_of_day", row["order_hour_of_day"])
        if not 0 <= hour < 24:
            raise DataError(path, line, f"order_hour_of_day {hour} is not 0–23")
        gap = parse_float(path, line, "days_since_prior_order", row["days_since_prior_order"],
                          allow_empty=True)
        if gap < 0:
            raise DataError(path, line, "days_since_prior_order is negative")
        orders[row["order_id"]] = (row["user_id"], number, hour, gap)
    by_user: dict[str, list[tuple[int, str]]] = {}
    for order_id, (user, number, _, _) in orders.items():
        by_user.setdefault(user, []).append((number, order_id))
    when: dict[str, datetime] = {}
    for entries in by_user.values():
        day = 0.0
        for rank, (_, order_id) in enumerate(sorted(entries)):
            _, _, hour, gap = orders[order_id]
            day += gap if rank else 0.0
            when[order_id] = INSTACART_START + timedelta(days=day, hours=hour)

    skipped = {"unknown_sku": 0, "unknown_order": 0}
    files = [data_dir / name for name in ("order_products__prior.csv", "order_products__train.csv")
             if (data_dir / name).exists()]
    if not files:
        raise DataError(data_dir / "order_products__prior.csv", 0, "no order_products file")

    def lines() -> Iterator[Line]:
        for file in files:
            for _line, (order_id, product) in read_tuples(file, ("order_id", "product_id")):
                head = orders.get(order_id)
                if head is None:
                    skipped["unknown_order"] += 1
                    continue
                item = catalog.index(product)
                if item is None:
                    skipped["unknown_sku"] += 1
                    continue
                yield (order_id, head[0], item, when[order_id], "unknown", None, "app")

    return build_dataset(catalog, lines(), skipped)


def _retail_time(path: Path, line: int, text: str) -> datetime:
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%m/%d/%Y %H:%M")):
        try:
            return parse(text).replace(tzinfo=None)
        except ValueError:
            continue
    raise DataError(path, line, f"InvoiceDate {text!r} is neither ISO nor m/d/Y H:M")


def load_online_retail(path: Path) -> Dataset:
    """Read a UCI Online Retail II CSV (see module docstring)."""
    path = Path(path)
    columns = ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
               "Customer ID", "Country")
    skipped = {"cancellation": 0, "no_customer": 0, "non_positive_quantity": 0}
    kept: list[tuple[str, str, str, datetime, str]] = []
    names: dict[str, tuple[str, float]] = {}
    for line, row in read_tuples(path, columns):
        invoice, code, text, qty, stamp, price, customer, country = row
        if not invoice or not code:
            raise DataError(path, line, "Invoice and StockCode must be non-empty")
        quantity = parse_int(path, line, "Quantity", qty)
        value = parse_float(path, line, "Price", price, allow_empty=True)
        when = _retail_time(path, line, stamp)
        if invoice.upper().startswith("C"):
            skipped["cancellation"] += 1
            continue
        if not customer:
            skipped["no_customer"] += 1
            continue
        if quantity <= 0:
            skipped["non_positive_quantity"] += 1
            continue
        customer = customer[:-2] if customer.endswith(".0") else customer
        names.setdefault(code, (text, value))
        kept.append((invoice, customer, code, when, country))
    if not kept:
        raise DataError(path, 0, "no usable lines")
    catalog = Catalog([CatalogItem(code, names[code][0], "retail", max(names[code][1], 0.0), 0.0)
                       for code in sorted(names)])
    position = {sku: i for i, sku in enumerate(catalog.skus)}
    return build_dataset(
        catalog,
        ((inv, cust, position[code], when, "unknown", None, "pos")
         for inv, cust, code, when, _ in kept),
        skipped,
    )


def load_layout(path: Path, layout: str = "generic") -> Dataset:
    """Load ``path`` in one of :data:`LAYOUTS`."""
    if layout == "generic":
        return load_dataset(path)
    if layout == "instacart":
        return load_instacart(path)
    if layout == "online_retail":
        return load_online_retail(path)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
