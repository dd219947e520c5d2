"""``python -m models model simulate|train|evaluate`` — the same commands as ``edge model``."""

from .cli import main

raise SystemExit(main())
