"""`edge central train`: consented purchases in PostgreSQL → the same trainer as `edge model train`.

A simulated store (``models.simulate``) is turned into the ``Order Completed`` events its
gateway would have sent, loaded by the central job's own loader; the centre's model must be
byte-identical to ``edge model train`` on the same purchases (same trainer, same hold-out
evaluation), and a person who withdrew ``cdp_sync`` afterwards is not trained on.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest

from models.build import train_model
from models.simulate import simulate_store
from sync.central import CentralJob
from sync.cli import add_commands
from sync.config import CentralConfig


def token_of(customer: str) -> str:
    return "ct_" + hashlib.sha256(customer.encode()).hexdigest()[:32]


def order_events(transactions: Path) -> list[tuple[str, bytes]]:
    orders: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(transactions, newline="") as f:
        for row in csv.DictReader(f):
            orders[row["order_id"]].append(row)
    messages = []
    for order_id, lines in orders.items():
        first = lines[0]
        body = {"type": "track", "event": "Order Completed", "messageId": f"m-{order_id}", "storeId": "s1",
                "channel": first["channel"], "userId": token_of(first["customer_id"]),
                "timestamp": first["timestamp"], "receivedAt": "2026-12-01T10:00:00.000Z",
                "context": {"weather": first["weather"]},
                "properties": {"orderId": order_id, "zoneId": first["zone"],
                               "products": [{"sku": r["sku"], "quantity": int(r["quantity"]),
                                             "price": float(r["price"])} for r in lines]}}  # fmt: skip
        messages.append(("cdp.events.s1", json.dumps(body).encode()))
    return messages


def with_tokens(source: Path, target: Path, drop: set[str] = frozenset()) -> None:
    """The same purchases as the store sent them: pseudonymous customer tokens."""
    target.mkdir()
    (target / "catalog.csv").write_bytes((source / "catalog.csv").read_bytes())
    with open(source / "transactions.csv", newline="") as f, open(target / "transactions.csv", "w", newline="") as out:
        reader, writer = csv.DictReader(f), None
        for row in reader:
            row["customer_id"] = token_of(row["customer_id"])
            if row["customer_id"] in drop:
                continue
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=reader.fieldnames)
                writer.writeheader()
            writer.writerow(row)


@pytest.mark.integration
def test_central_train_is_the_model_trainer_on_the_consented_purchases(tmp_path, postgres, capsys):
    simulate_store(tmp_path / "store", seed=3, customers=150, days=30, skus=120)
    job = CentralJob(CentralConfig(postgres=postgres))

    async def load() -> None:
        await job.create_schema()
        async with await psycopg.AsyncConnection.connect(postgres) as pg:
            await job.load(pg, order_events(tmp_path / "store" / "transactions.csv"))

    asyncio.run(load())
    withdrawn = token_of("c00011")
    with psycopg.connect(postgres) as conn:
        conn.execute("INSERT INTO cdp_consent VALUES (%s, '{\"cdp_sync\": false}', 's1', 'c1', '2026-12-02')",
                     (withdrawn,))  # fmt: skip
    parser = argparse.ArgumentParser(prog="edge")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["central", "train", "--postgres", postgres, "--out", str(tmp_path / "central"),
                              "--catalog", str(tmp_path / "store" / "catalog.csv")])  # fmt: skip
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    with_tokens(tmp_path / "store", tmp_path / "direct-data", drop={withdrawn})
    direct = train_model(tmp_path / "direct-data", tmp_path / "direct")
    central = json.loads((tmp_path / "central" / "manifest.json").read_text())
    assert central["metrics"] == direct["metrics"] == printed["metrics"] and central["metrics"]
    assert central["training"]["baskets"] == direct["training"]["baskets"] > 0
    for name in ("model.onnx", "history.json"):
        assert (tmp_path / "central" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name
