"""Package hygiene: exported names, the dependency rule, small modules, py.typed."""

from __future__ import annotations

import ast
from pathlib import Path

import models

PACKAGE = Path(models.__file__).resolve().parent
FORBIDDEN = (
    "edge",
    "fastapi",
    "starlette",
    "uvicorn",
    "paho",
    "bleak",
    "serial",
    "cv2",
    "nats",
    "httpx",
    "psycopg",
    "sqlite3",
    "sqlite_utils",
)


def test_all_matches_public_names() -> None:
    public = {n for n in vars(models) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(models, n)).__name__ == "module"}
    assert set(models.__all__) == public - modules - {"Path"}
    for name in models.__all__:
        assert hasattr(models, name)


def test_no_web_io_or_edge_imports_and_small_modules() -> None:
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        assert len(source.splitlines()) < 420, path.name
        for node in ast.walk(ast.parse(source)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, (path.name, name)


def test_py_typed_and_default_model_present() -> None:
    assert (PACKAGE / "py.typed").exists()
    for name in ("model.onnx", "manifest.json", "catalog.csv", "history.json"):
        assert (models.DEFAULT_MODEL_DIR / name).exists()
