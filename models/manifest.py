"""Reading and verifying a model directory's manifest and the files it vouches for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ModelError
from .interface import FORMAT_VERSION, file_sha256

__all__ = ["check_file", "read_manifest"]


def read_manifest(model_dir: Path) -> dict[str, Any]:
    """The parsed manifest; ModelError if missing, unreadable, incomplete or of another format."""
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no manifest.json; is this a model directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{model_dir}/manifest.json is unreadable: {exc}") from None
    needed = ("format_version", "model_sha256", "catalog_sha256", "history_sha256", "n_items", "top_k", "signature")
    if not isinstance(manifest, dict) or any(key not in manifest for key in needed):
        raise ModelError(f"{model_dir}/manifest.json lacks one of {', '.join(needed)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ModelError(
            f"{model_dir}: model format {manifest['format_version']!r} is not supported "
            f"(this gateway reads format {FORMAT_VERSION}); upgrade the gateway or the model"
        )
    return manifest


def check_file(path: Path, expected: Any) -> None:
    """ModelError unless ``path`` exists and its sha256 is ``expected``."""
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise ModelError(f"{path} is unreadable: {exc}") from None
    if actual != expected:
        raise ModelError(
            f"{path.name} sha256 {actual[:16]}… does not match the manifest "
            f"({str(expected)[:16]}…): the file is corrupt or from another model; re-fetch it"
        )
