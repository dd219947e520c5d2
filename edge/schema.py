"""The whole gateway's configuration schema and journal migrations, assembled in one place.

Features own their sections and tables; this module only lists them, so ``edge config check``,
the docs test and every command open the same configuration and the same journal.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge import listeners, pairing, registry, settings
from edge.config import Config, load_config
from edge.journal import Journal, Migration
from edge.settings import FEATURES

__all__ = ["FEATURES", "config_schema", "journal_path", "load", "migrations", "open_journal"]


def _features() -> list[Any]:
    found = []
    for name in FEATURES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found


def config_schema() -> dict[str, type]:
    schema = dict(settings.CONFIG_SECTIONS) | listeners.CONFIG_SECTIONS
    for feature in _features():
        for name, section in getattr(feature, "CONFIG_SECTIONS", {}).items():
            if name in schema:
                raise RuntimeError(f"config section {name!r} defined twice")
            schema[name] = section
    return schema


def migrations() -> tuple[Migration, ...]:
    found: list[Migration] = [*registry.MIGRATIONS, *pairing.MIGRATIONS]
    for feature in _features():
        found.extend(getattr(feature, "MIGRATIONS", ()))
    return tuple(found)


def load(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    return load_config(path, config_schema(), env)


def journal_path(config: Config) -> Path:
    return Path(config.journal.path) if config.journal.path else config.store.state_dir / "journal.db"


def open_journal(config: Config) -> Journal:
    return Journal(
        journal_path(config),
        synchronous=config.journal.synchronous,
        dead_letter_max=config.journal.dead_letter_max,
        migrations=migrations(),
    )
