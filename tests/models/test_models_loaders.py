"""Loaders: the three layouts on named fixtures, line-numbered rejection, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.catalog import load_catalog
from models.data import load_dataset, load_transactions
from models.errors import DataError
from models.layouts import load_instacart, load_layout, load_online_retail

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"

CATALOG = "sku,name,category,price,margin\nA1,Milk,dairy,1.19,0.2\nB1,Bread,bakery,2.5,0.3\n"
HEADER = "order_id,customer_id,sku,quantity,price,timestamp,store_id\n"
GOOD = "o1,c1,A1,1,1.19,2026-01-05T08:10:00,s1\n"


def test_generic_fixture_loads_baskets_and_counts_skips() -> None:
    ds = load_dataset(FIXTURES / "generic")
    assert ds.order_ids == ["o1", "o2", "o3"]
    assert [ds.catalog.skus[i] for i in ds.basket(1)] == ["A1", "C1"]
    assert ds.skipped == {"unknown_sku": 1, "non_positive_quantity": 1}
    assert ds.contexts[0].weather == "rain" and ds.contexts[0].hour == 8
    assert ds.contexts[2].channel == "kiosk" and ds.contexts[2].weather == "unknown"
    assert ds.last_basket_mask().tolist() == [False, True, True]


def test_instacart_fixture() -> None:
    ds = load_instacart(FIXTURES / "instacart")
    assert len(ds.catalog) == 6 and ds.catalog.item("196").category == "beverages"
    assert ds.n_baskets == 6  # the test-set order has no products
    assert ds.skipped["unknown_sku"] == 1
    first_user = [o for o, c in zip(ds.order_ids, ds.customer, strict=True) if c == 0]
    assert first_user == ["2539329", "2398795", "473747", "1187899"]
    days = (ds.time[3] - ds.time[0]) / 86400
    assert days == pytest.approx(15 + 21 + 14 + 0 / 24, abs=0.5)


def test_online_retail_fixture() -> None:
    ds = load_online_retail(FIXTURES / "online_retail_ii.csv")
    assert ds.skipped == {"cancellation": 1, "no_customer": 1, "non_positive_quantity": 1}
    assert ds.customer_ids == ["13078", "13085"]
    assert ds.n_baskets == 3 and ds.catalog.item("22349").name.startswith("DOG BOWL")
    assert load_layout(FIXTURES / "online_retail_ii.csv", "online_retail").n_baskets == 3


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (HEADER + GOOD + "o2,c1,A1,x,1,2026-01-05T08:10:00,s1\n", 3, "quantity"),
        (HEADER + GOOD + "o2,c1,A1,1,1,yesterday,s1\n", 3, "timestamp"),
        (HEADER + GOOD + "o2,c1,A1,1,1\n", 3, "fields"),
        (HEADER + GOOD + "o1,c2,B1,1,1,2026-01-05T08:10:00,s1\n", 3, "mid-order"),
        (HEADER + GOOD + "o2,,A1,1,1,2026-01-05T08:10:00,s1\n", 3, "non-empty"),
        (HEADER + GOOD + "o2,c1,A1,1,nan,2026-01-05T08:10:00,s1\n", 3, "price"),
        ("order_id,sku\n" + GOOD, 1, "header"),
        (HEADER + GOOD + 'o2,c1,"A1,1,1,2026\n', 3, "CSV"),
    ],
)
def test_transactions_reject_malformed_rows_with_line(tmp_path: Path, body: str, line: int, reason: str) -> None:
    (tmp_path / "catalog.csv").write_text(CATALOG)
    (tmp_path / "transactions.csv").write_text(body)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path)
    assert err.value.line == line and reason in err.value.reason
    assert str(err.value).startswith(f"{tmp_path / 'transactions.csv'}:{line}: ")


def test_bad_encoding_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "catalog.csv").write_bytes(CATALOG.encode() + b"C1,\xff\xfe,x,1,0\n")
    with pytest.raises(DataError, match="UTF-8") as err:
        load_catalog(tmp_path / "catalog.csv")
    assert err.value.line == 4
    with pytest.raises(DataError, match="cannot open"):
        load_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("row", "reason"),
    [("A1,Again,dairy,1,0", "repeats line 2"), (",x,y,1,0", "empty"), ("C1,x,y,-1,0", "negative")],
)
def test_catalog_rejects_with_line(tmp_path: Path, row: str, reason: str) -> None:
    (tmp_path / "catalog.csv").write_text(CATALOG + row + "\n")
    with pytest.raises(DataError, match=reason) as err:
        load_catalog(tmp_path / "catalog.csv")
    assert err.value.line == 4


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
cells = st.sampled_from(
    [
        "o1",
        "c1",
        "A1",
        "B1",
        "1",
        "-2",
        "1.5",
        "",
        "x",
        "nan",
        "1e400",
        "2026-01-05T08:10:00",
        "2026-13-40",
        "1700000000",
        '"',
        "\x00",
        "é",
    ]
)


@FUZZ
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=9), max_size=8))
def test_fuzz_transactions_only_raise_data_error(tmp_path: Path, rows: list[list[str]]) -> None:
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG)
    path = tmp_path / "transactions.csv"
    path.write_text(HEADER + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")
    try:
        load_transactions(path, load_catalog(catalog))
    except DataError:
        pass


@FUZZ
@given(blob=st.binary(max_size=300))
def test_fuzz_raw_bytes_only_raise_data_error(tmp_path: Path, blob: bytes) -> None:
    for name, header in (
        ("catalog.csv", b"sku,name,category,price,margin\n"),
        ("retail.csv", b"Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"),
    ):
        path = tmp_path / name
        path.write_bytes(header + blob)
        try:
            if name == "catalog.csv":
                load_catalog(path)
            else:
                load_online_retail(path)
        except DataError:
            pass
