"""Progress bars for the long CLI steps: on stderr, and only for a person watching a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, quiet: bool, total: int | None = None) -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar unless ``quiet`` or stderr is not a TTY."""
    disable = quiet or not sys.stderr.isatty()
    yield from tqdm(items, desc=desc, total=total, disable=disable, file=sys.stderr, leave=False)
