"""Typed configuration: one TOML file plus ``MEPL_*`` environment overrides.

Each package declares its own frozen dataclasses (``blobstore.config``,
``sms_gateway.config``, ``signing.config``...).  This module is the single
place that turns untyped TOML/environment data into those dataclasses, so
every error names the offending key (``smpp.links.carrier_a.port: expected an
integer, got 'abc'``) and unknown keys are refused instead of ignored.

Environment overrides: any leaf key can be set as ``MEPL_`` followed by its
dotted path in upper case with ``__`` between levels, for example
``MEPL_DATABASE__URL`` or ``MEPL_SMPP__LINKS__CARRIER_A__PASSWORD``.  The
shorter aliases in :data:`ENV_ALIASES` (``MEPL_DATABASE_URL``...) are kept for
the settings operators touch most.
"""

from __future__ import annotations

import dataclasses
import enum
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENV_PREFIX = "MEPL_"
ENV_ALIASES: Mapping[str, str] = {
    "MEPL_DATABASE_URL": "database.url",
    "MEPL_STATE_DIR": "mepl.state_dir",
    "MEPL_DEFAULT_REGION": "mepl.default_region",
}


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning syntax errors into :class:`ConfigError`."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except OSError as exc:  # a directory, no permission...
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"config file {path} is not UTF-8 text (TOML is UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"config file {path} is not valid TOML: {exc}") from None


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``MEPL_*`` environment values merged in.

    Values from the environment are strings; :func:`build` converts them to
    the declared field type (``"8"`` to ``8``, ``"true"`` to ``True``).
    """
    merged: dict[str, Any] = _deep_copy(data)
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        dotted = ENV_ALIASES.get(name)
        if dotted is None:
            if "__" not in name:
                continue
            dotted = ".".join(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        node = merged
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(dotted, f"environment variable {name} conflicts with a value")
            node = child
        node[parts[-1]] = value
    return merged


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def build(cls: type[T], data: Any, key: str = "") -> T:
    """Build dataclass ``cls`` from mapping ``data``; errors name the key path."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(_join(key, unknown[0]), "unknown key")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        sub = _join(key, name)
        if name in data:
            values[name] = _convert(hints[name], data[name], sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "required key is missing")
    try:
        return cls(**values)
    except ValueError as exc:
        # "field: problem" from __post_init__ names the field: report its full key.
        name, sep, problem = str(exc).partition(": ")
        if sep and name in fields:
            raise ConfigError(_join(key, name), problem) from None
        raise ConfigError(key, str(exc)) from None


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or value == ""):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(key, "; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(key, f"expected one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {type(value).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return types.MappingProxyType(
            {str(k): _convert(vt, v, _join(key, str(k))) for k, v in value.items()}
        )
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return build(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(key, f"expected one of {choices}, got {value!r}") from None
    return _convert_scalar(tp, value, key)


def _convert_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    if tp is Path:
        if isinstance(value, str) and value:
            try:
                return Path(value).expanduser()
            except RuntimeError:  # "~name" for a user this system does not know
                raise ConfigError(key, f"cannot expand {value.split('/')[0]!r}: no such "
                                  "user's home directory") from None
        raise ConfigError(key, f"expected a path, got {value!r}")
    raise TypeError(f"config field type {tp!r} at {key} is not supported")
