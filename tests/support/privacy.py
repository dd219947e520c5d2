"""Distinctive raw identifiers the tests use, and the scan proving they never land anywhere.

Tests that feed raw identifiers through the gateway use these values; the session-wide check
in tests/conftest.py scans every file every test wrote (the pytest base temp directory) and
every captured log for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

RAW_EMAIL = "Zelda.Quuxington+edge@Example-Privacy.test"
RAW_PHONE = "(415) 555-0199"
RAW_LOYALTY = "LOY-7788-9911-2233"
RAW_APP = "app-zzq-9f8e7d6c5b4a"
RAW_NEEDLES = (
    "zelda.quuxington", "Quuxington", "4155550199", "555-0199", "778899112233", "7788-9911",
    "app-zzq-9f8e7d6c5b4a",
    # base64 forms (a leak through an encoded excerpt or header): of the raw and lower-case text
    "WmVsZGEuUXV1eGluZ3Rvbitl", "emVsZGEucXV1eGluZ3Rvbitl", "YXBwLXp6cS05ZjhlN2Q2YzViNGE",
    "KDQxNSkgNTU1LTAxOTk", "TE9ZLTc3ODgtOTkxMS0yMjMz", "bG95LTc3ODgtOTkxMS0yMjMz",
)  # fmt: skip


def scan_for(paths: Sequence[Path], needles: Sequence[str | bytes]) -> list[str]:
    """Every (file, needle) hit in ``paths`` (recursively, case-insensitive), as text."""
    lowered = [(n, (n.encode() if isinstance(n, str) else n).lower()) for n in needles]
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        for path in files:
            try:
                data = path.read_bytes().lower()
            except OSError:
                continue
            hits.extend(f"{path}: {needle!r}" for needle, raw in lowered if raw in data)
    return hits


def needle_forms(raw: str) -> list[str]:
    """Every form a leaked identifier could take on disk or the wire: as sent, lower-case,
    URL-encoded (both flavours), base64 (of the raw and the lower-case text) and, when it has
    seven digits or more, its digits only. ``scan_for`` compares case-insensitively."""
    import base64
    from urllib.parse import quote, quote_plus

    forms = {raw, raw.lower(), quote(raw, safe=""), quote_plus(raw)}
    forms |= {base64.b64encode(t.encode()).decode().rstrip("=") for t in (raw, raw.lower())}
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 7:
        forms.add(digits)
    return sorted(forms)
