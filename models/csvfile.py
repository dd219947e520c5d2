"""Strict CSV reading shared by every loader: header check, line numbers, one error type.

Any problem — bad encoding, a NUL byte, a short row, a quoting error — becomes a
:class:`~models.errors.DataError` naming the file and the 1-based physical line, so an operator
can open the file at that line. Nothing else escapes.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from .errors import DataError

__all__ = ["parse_float", "parse_int", "parse_timestamp", "read_rows", "read_tuples"]

csv.field_size_limit(1 << 20)


def read_rows(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line, row)`` with exactly the required and present optional columns, stripped."""
    names = list(required) + list(optional)
    for line, values in read_tuples(path, required, optional):
        yield line, dict(zip(names, values, strict=True))


def read_tuples(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Yield ``(line, values)``: required then optional columns (absent ones as ""), stripped."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(path, 0, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(_decoded(path, handle), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(path, 1, "file is empty; expected a header row")
            names = [name.strip().lstrip("\ufeff") for name in header]
            missing = [name for name in required if name not in names]
            if missing:
                raise DataError(path, 1, f"header lacks column(s) {', '.join(missing)}")
            positions = [names.index(name) for name in required]
            positions += [names.index(name) if name in names else len(names) for name in optional]
            width = len(names)
            pick = itemgetter(*positions)
            strip = str.strip
            for fields in reader:
                line = reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if len(fields) != width:
                    raise DataError(path, line, f"expected {width} fields, found {len(fields)}")
                fields.append("")
                picked = pick(fields)
                yield line, tuple(map(strip, picked)) if len(positions) > 1 else (strip(picked),)
        except csv.Error as exc:
            raise DataError(path, reader.line_num, f"CSV syntax: {exc}") from None


def _decoded(path: Path, handle: BinaryIO) -> Iterator[str]:
    """Decode line by line, so an encoding error is reported on its own line."""
    for number, raw in enumerate(handle, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(path, number, f"not valid UTF-8 ({exc.reason})") from None


def parse_float(path: Path, line: int, name: str, text: str, *, allow_empty: bool = False) -> float:
    """A finite float, or a DataError naming the column."""
    if not text and allow_empty:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, line, f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(path, line, f"{name} {text!r} is not finite")
    return value


def parse_int(path: Path, line: int, name: str, text: str) -> int:
    """An integer (``"3"`` or ``"3.0"``), or a DataError naming the column."""
    value = parse_float(path, line, name, text)
    if value != int(value) or abs(value) > 2**53:
        raise DataError(path, line, f"{name} {text!r} is not an integer")
    return int(value)


def parse_timestamp(path: Path, line: int, text: str) -> datetime:
    """ISO-8601 local store time, or epoch seconds; any timezone is dropped (store-local)."""
    try:
        if text and (text[0].isdigit() and text.replace(".", "", 1).isdigit()):
            return _from_epoch(float(text))
        stamp = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        reason = f"timestamp {text!r} is not ISO-8601 or epoch seconds"
        raise DataError(path, line, reason) from None
    if not 1970 <= stamp.year <= 2200:
        raise DataError(path, line, f"timestamp {text!r} is out of range")
    return stamp.replace(tzinfo=None)


def _from_epoch(seconds: float) -> datetime:
    if not 0 <= seconds < 7.2e9:
        raise ValueError("epoch out of range")
    return datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)
