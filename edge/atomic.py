"""Atomic writes of private files (keys, credentials, the store network record), mode 0600.

Apart from :mod:`edge.pki` so that what writes such a file does not load ``cryptography``: the
gateway imports that library only when it issues a certificate (≈ 9 MB of its RSS).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` atomically with mode 0600 (keys, credentials)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
