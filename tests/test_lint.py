"""House rule 8 and the architecture contracts, run by `make test`.

* ruff check and ruff format --check on the source, the tests and the benchmarks;
* mypy --strict on every package (``[tool.mypy]`` in pyproject.toml; its incremental cache lives
  in pytest's cache directory, so a re-run checks only what changed);
* the import contracts of DESIGN.md ("Dependency direction", ``[tool.importlinter]``), one test
  per contract so a broken one names itself and prints the imports that break it; and a check,
  on a scratch copy of the tree, that each contract fails when the import it forbids is planted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "devices", "models", "sync")
LINTED = (*PACKAGES, "bench", "tests")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def _cache_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """pytest's cache directory (kept between runs), or a scratch one under ``-p no:cacheprovider``."""
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)


def _run(args: list[str], cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_ruff_check_is_clean_on_source_and_tests():
    result = _run([_tool("ruff"), "check", *LINTED], timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_format_is_applied_to_source_and_tests():
    result = _run([_tool("ruff"), "format", "--check", "--output-format", "concise", *LINTED], timeout=120)
    assert result.returncode == 0, "run `ruff format " + " ".join(LINTED) + "`:\n" + result.stdout[-3000:]


def test_mypy_strict_on_every_package(pytestconfig, tmp_path_factory):
    cache = _cache_dir(pytestconfig, tmp_path_factory, "mypy")
    result = _run([_tool("mypy"), "--cache-dir", str(cache)])  # files and strictness: [tool.mypy]
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Success: no issues found" in result.stdout, result.stdout[-1000:]


def test_mypy_config_is_strict_on_every_package():
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    assert sorted(mypy["files"]) == sorted(PACKAGES)
    for override in mypy.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        ours = [m for m in modules if m.split(".")[0] in PACKAGES]
        assert not ours, f"an override relaxes mypy on {ours}: {override}"


@pytest.mark.parametrize("contract", CONTRACTS, ids=[c["id"] for c in CONTRACTS])
def test_import_contract(contract, pytestconfig, tmp_path_factory):
    cache = _cache_dir(pytestconfig, tmp_path_factory, "importlinter")
    result = _run([_tool("lint-imports"), "--no-logo", "--cache-dir", str(cache), "--contract", contract["id"]])
    assert "Contracts: 1 kept, 0 broken." in result.stdout and result.returncode == 0, result.stdout[-4000:]


# One planted import per contract, each a line a newcomer could plausibly write, and what the report must name.
PLANTED = {
    "layers": ("devices/status.py", "from edge import gateway\n", "devices.status -> edge.gateway"),
    "core-below-features": ("edge/journal.py", "import sync.outbox\n", "edge.journal -> sync.outbox"),
    "root-protected": ("edge/http.py", "from edge.decisioning import api\n", "edge.http -> edge.decisioning"),
    "devices-not-sync": ("devices/outlet.py", "import sync.policy\n", "devices.outlet -> sync.policy"),
    "models-no-io": ("models/catalog.py", "import sqlite3\n", "models.catalog -> sqlite3"),
    "parsers-no-io": ("devices/ble/protocol.py", "import asyncio\n", "devices.ble.protocol -> asyncio"),
    "acyclic": ("edge/errors.py", "import edge.journal\n", ".errors -> .journal"),
}


def test_every_contract_has_a_planted_violation():
    assert sorted(PLANTED) == sorted(c["id"] for c in CONTRACTS)


@pytest.mark.parametrize("contract_id", sorted(PLANTED))
def test_contract_catches_a_planted_import(contract_id, tmp_path):
    """The contract is not vacuous: on a copy of the tree with one forbidden import added, it names that import."""
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.csv"))
        else:
            shutil.copy(src, tmp_path / name)
    path, line, reported = PLANTED[contract_id]
    target = tmp_path / path
    target.write_text(target.read_text() + line)
    result = _run([_tool("lint-imports"), "--no-logo", "--no-cache", "--contract", contract_id], cwd=tmp_path)
    assert result.returncode == 1 and "BROKEN" in result.stdout, result.stdout[-3000:]
    assert reported in result.stdout, result.stdout[-3000:]


def test_tests_mirror_the_package_layout():
    """Every test directory is the package it tests (tests/edge/decisioning ↔ edge/decisioning …);
    tests/support and tests/fixtures hold shared helpers and recorded bytes."""
    shared = {"support", "fixtures", ".node", "__pycache__"}
    strays = []
    for directory in sorted(p for p in (ROOT / "tests").rglob("*") if p.is_dir()):
        relative = directory.relative_to(ROOT / "tests")
        if relative.parts[0] in shared or "__pycache__" in relative.parts or relative.parts[0].startswith("."):
            continue
        if not (ROOT / relative / "__init__.py").is_file():
            strays.append(str(relative))
    assert strays == [], f"test directories with no package of that name: {strays}"


def test_the_gateway_loads_no_library_its_default_features_do_not_use():
    """Memory on a 1–4 GB box: the default features' modules import neither the ONNX graph
    builder (models.export's onnx, 17 MB: only `edge model build` needs it) nor OpenCV (only a
    configured camera does), nor the central side's PostgreSQL driver, nor the NATS client and
    its nkeys (only a store with a NATS sink or a downlink connects to a centre), nor httpx
    (only an HTTP sink sends with it), nor cryptography (≈ 9 MB: only issuing a certificate, a
    signed downlink or a camera's sign-in tokens need it; tests/edge/test_certstate.py shows a
    start with the store PKI in place does not load it either)."""
    code = (
        "import sys; import edge.gateway, edge.cli, models.runtime, models.manifest, devices.component,"
        " sync.component, edge.model, edge.decisioning.component, edge.triggers.component;"
        " print(sorted(m for m in ('onnx', 'cv2', 'pyzbar', 'psycopg', 'nats', 'nkeys', 'httpx',"
        " 'cryptography') if m in sys.modules))"
    )
    result = _run([sys.executable, "-c", code], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", result.stdout
