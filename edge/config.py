"""Configuration: one TOML file plus ``EDGE_*`` environment overrides, validated at start.

Each section is a frozen dataclass; every field carries its documentation in
``field(metadata={"doc": ...})`` and, where the type alone is not enough, a ``check`` callable
returning an error message or ``None``. Packages contribute their own sections (see
:mod:`edge.schema`, which assembles the full schema), so a key is defined exactly once.

Environment overrides use a double underscore between section and key:
``EDGE_MQTT__URL=mqtt://10.0.0.2:1883`` sets ``mqtt.url``. Values are parsed as TOML scalars
when possible (``EDGE_HTTP__PORT=9000`` is an integer), else taken as strings.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from edge.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "Config", "config_file", "doc", "load_config", "parse_config", "section_keys"]

#: Where an installed gateway keeps its configuration (see systemd/).
DEFAULT_CONFIG = Path("/etc/edge-gateway/gateway.toml")

T = TypeVar("T")
Check = Callable[[Any], str | None]


def doc(default: Any, text: str, check: Check | None = None) -> Any:
    """A documented config field with a default (and an optional extra check)."""
    if isinstance(default, (list, dict)):
        factory: Callable[[], Any] = lambda: type(default)(default)  # noqa: E731
        return dataclasses.field(default_factory=factory, metadata={"doc": text, "check": check})
    return dataclasses.field(default=default, metadata={"doc": text, "check": check})


class Config:
    """The loaded configuration: attribute access per section (``config.mqtt.url``)."""

    def __init__(self, sections: Mapping[str, Any], source: Path | None) -> None:
        self._sections = dict(sections)
        self.source = source

    def __getattr__(self, name: str) -> Any:
        try:
            return self._sections[name]
        except KeyError:
            raise AttributeError(f"no config section {name!r}") from None

    def section(self, name: str) -> Any:
        return self._sections[name]

    def replace(self, name: str, **changes: Any) -> Config:
        sections = dict(self._sections)
        sections[name] = dataclasses.replace(sections[name], **changes)
        return Config(sections, self.source)


def config_file(path: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """Which file a command reads: ``path`` (``--config``) if given, else ``$EDGE_CONFIG``, else
    :data:`DEFAULT_CONFIG` if present; None: built-in defaults only."""
    env = os.environ if env is None else env
    if path is None and env.get("EDGE_CONFIG"):
        path = Path(env["EDGE_CONFIG"])
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    return path


def section_keys(schema: Mapping[str, type]) -> list[tuple[str, str, Any, str]]:
    """Every (key path, type name, default, doc) of a schema, for docs and the docs test."""
    rows = []
    for name, cls in schema.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            rows.append((f"{name}.{f.name}", _type_name(hints[f.name]), default, f.metadata.get("doc", "")))
    return rows


def load_config(path: Path | None, schema: Mapping[str, type], env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or only defaults when ``None``), apply ``EDGE_*`` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([("<file>", f"{path} does not exist")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([("<file>", f"{path} is not valid TOML: {exc}")]) from None
    return parse_config(raw, schema, os.environ if env is None else env, source=path)


def parse_config(
    raw: Mapping[str, Any],
    schema: Mapping[str, type],
    env: Mapping[str, str],
    source: Path | None = None,
) -> Config:
    errors: list[tuple[str, str]] = []
    merged: dict[str, dict[str, Any]] = {}
    for name, value in raw.items():
        if name not in schema:
            errors.append((name, f"unknown section (known: {', '.join(sorted(schema))})"))
        elif not isinstance(value, dict):
            errors.append((name, "must be a table ([" + name + "])"))
        else:
            merged[name] = dict(value)
    for key, value in env.items():
        if not key.startswith("EDGE_") or "__" not in key:
            continue
        section, _, field_name = key[5:].lower().partition("__")
        if section not in schema:
            errors.append((f"{section}.{field_name}", f"unknown section in environment variable {key}"))
            continue
        merged.setdefault(section, {})[field_name] = _env_value(value)
    sections: dict[str, Any] = {}
    for name, cls in schema.items():
        sections[name] = _build(name, cls, merged.get(name, {}), errors)
    if errors:
        raise ConfigError(errors)
    return Config(sections, source)


def _env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _build(name: str, cls: type[T], values: dict[str, Any], errors: list[tuple[str, str]]) -> T | None:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{name}.{key}"
        if key not in fields:
            errors.append((path, f"unknown key (known: {', '.join(sorted(fields))})"))
            continue
        problem, converted = _coerce(value, hints[key])
        if problem is None:
            check = fields[key].metadata.get("check")
            problem = check(converted) if check else None
        if problem is not None:
            errors.append((path, problem))
        else:
            kwargs[key] = converted
    for key, f in fields.items():
        check = f.metadata.get("check")
        if key not in kwargs and check and f.default is not dataclasses.MISSING:
            problem = check(f.default)
            if problem is not None:
                errors.append((f"{name}.{key}", problem))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        errors.append((name, str(exc)))
        return None


def _coerce(value: Any, hint: Any) -> tuple[str | None, Any]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        last = None
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None, None
            if arg is type(None):
                continue
            last, converted = _coerce(value, arg)
            if last is None:
                return None, converted
        return last, None
    if typing.get_origin(hint) is typing.Literal:
        allowed = typing.get_args(hint)
        if value in allowed:
            return None, value
        return f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}", None
    if hint is bool:
        return (None, value) if isinstance(value, bool) else (f"must be true or false, got {value!r}", None)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return None, value
        return f"must be an integer, got {value!r}", None
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None, float(value)
        return f"must be a number, got {value!r}", None
    if hint is str:
        return (None, value) if isinstance(value, str) else (f"must be a string, got {value!r}", None)
    if hint is Path:
        return (None, Path(value)) if isinstance(value, str) else (f"must be a path string, got {value!r}", None)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            return f"must be a list, got {value!r}", None
        out = []
        for i, v in enumerate(value):
            problem, converted = _coerce(v, item)
            if problem:
                return f"item {i}: {problem}", None
            out.append(converted)
        return None, out
    if origin is dict:
        return (None, dict(value)) if isinstance(value, dict) else (f"must be a table, got {value!r}", None)
    return f"unsupported type {hint!r}", None


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return f"list[{_type_name(typing.get_args(hint)[0])}]"
    if hint is type(None):
        return "none"
    return getattr(hint, "__name__", str(hint))
