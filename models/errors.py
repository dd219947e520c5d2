"""The one exception tree of the recommender package.

::

    ModelsError                 base: catch this to handle anything raised on purpose here
    ├── DataError(path, line, reason)   a data file is unreadable or has a malformed row
    └── ModelError(reason)              a model directory, or an input to it, is unusable

Every message says what was wrong and, where it helps, what to do. Nothing else is raised
deliberately: loaders and the runtime convert foreign exceptions at their boundary.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError", "ModelError", "ModelsError"]


class ModelsError(Exception):
    """Base class of every error raised on purpose by ``models``."""


class DataError(ModelsError):
    """A data file cannot be used; ``line`` is 1-based (the header is line 1, 0 = whole file)."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {reason}")


class ModelError(ModelsError):
    """A model cannot be loaded or served, or a request to it is malformed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
