"""CLI: the commands run end to end, --json prints one object, every command is documented."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from models.cli import add_commands, main

DOC = Path(__file__).resolve().parents[2] / "models" / "README.md"


def test_simulate_train_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = str(tmp_path / "d"), str(tmp_path / "m")
    assert (
        main(
            [
                "model",
                "simulate",
                "--seed",
                "3",
                "--customers",
                "120",
                "--days",
                "15",
                "--skus",
                "80",
                "--out",
                data,
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["model", "train", "--data", data, "--out", model, "--quiet", "--dim", "32"]) == 0
    capsys.readouterr()
    assert main(["model", "evaluate", "--model", model, "--data", data, "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert out.count("\n") == 1 and report["k"] == 10
    # backward compatible: every key of the first format is still there, new ones beside it
    assert set(report["results"]) == {
        "model",
        "popularity",
        "personal_top_frequency",
        "item_knn",
        "oracle",
        "tifu_knn",
        "tifu_item_knn",
        "conditional_oracle",
        "posterior_oracle",
    }
    for metrics in report["results"].values():
        assert set(metrics) == {
            "recall@10",
            "ndcg@10",
            "hit_rate@10",
            "recall_repeat@10",
            "recall_explore@10",
            "repeat_share@10",
        }
    assert set(report["intervals"]) == set(report["results"]) - {"model"}
    for interval in report["intervals"]["tifu_knn"].values():
        assert interval["low"] <= interval["margin"] <= interval["high"]
    assert report["split"] == "last" and report["requests"] > 0
    assert main(["model", "evaluate", "--model", model, "--data", data]) == 0
    table = capsys.readouterr().out
    assert "personal_top_frequency" in table and "95% CI" in table and "tifu_item_knn" in table


def test_time_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = str(tmp_path / "d"), str(tmp_path / "m")
    assert (
        main(
            [
                "model",
                "simulate",
                "--seed",
                "4",
                "--customers",
                "150",
                "--days",
                "30",
                "--skus",
                "80",
                "--out",
                data,
                "--quiet",
            ]
        )
        == 0
    )
    split = ["--split", "time", "--cutoff", "2026-01-26"]  # the simulation starts 2026-01-05
    assert main(["model", "train", "--data", data, "--out", model, "--quiet", *split]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["created"] < "2026-01-26" and "2026-01-26" in manifest["training"]["held_out"]
    capsys.readouterr()
    assert main(["model", "evaluate", "--model", model, "--data", data, "--json", *split]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "time" and report["cutoff"] == "2026-01-26T00:00:00"
    assert "oracle" not in report["results"]  # the simulator's truth is for the last baskets
    assert report["results"]["model"]["recall@10"] > report["results"]["popularity"]["recall@10"]
    assert main(["model", "evaluate", "--model", model, "--data", data, "--split", "time"]) == 2
    assert "--cutoff" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["model", "evaluate", "--model", model, "--data", data, *split[:3], "soon"])
    assert "not an ISO date" in capsys.readouterr().err


def test_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_every_command_and_option_is_documented() -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    doc = DOC.read_text()
    model = parser._subparsers._group_actions[0].choices["model"]  # type: ignore[union-attr]
    commands = model._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        assert f"edge model {name}" in doc, name
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in doc, (name, flag)


def test_tiny_and_untrainable_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "generic"
    assert main(["model", "train", "--data", str(fixtures), "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["model", "evaluate", "--model", str(tmp_path / "m"), "--data", str(fixtures), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["model"]["hit_rate@10"] == 1.0
    one = tmp_path / "one"
    one.mkdir()
    (one / "catalog.csv").write_text((fixtures / "catalog.csv").read_text())
    (one / "transactions.csv").write_text(
        "order_id,customer_id,sku,quantity,price,timestamp,store_id\no1,c1,A1,1,1,2026-01-05T08:00:00,s\n"
    )
    assert main(["model", "train", "--data", str(one), "--out", str(tmp_path / "x")]) == 2
    assert "two baskets" in capsys.readouterr().err
