"""What a model directory's graph promises its runtime: the input and output names, the format
version, and how its files are fingerprinted. Kept apart from :mod:`models.export` so the
gateway's runtime (:mod:`models.runtime`, :mod:`models.manifest`) never imports the ``onnx``
graph builder (17 MB of memory on the box) for a few constants."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["FORMAT_VERSION", "INPUTS", "OUTPUTS", "file_sha256"]

FORMAT_VERSION = 1
INPUTS = ("basket", "history", "history_weights", "context")
OUTPUTS = ("top_items", "top_scores")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
