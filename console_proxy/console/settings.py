"""Where ``mdm-console`` finds its connection settings: flags, environment, configuration file.

Each setting is taken from the first place that has it: the command-line
flag, then the environment (``MDM_CONSOLE_PROXY``...), then the
configuration file (``--config``, ``MDM_CONSOLE_CONFIG``, or
``$XDG_CONFIG_HOME/mdm-console/config.toml``, by default
``~/.config/mdm-console/config.toml``).  Paths in the file are relative to
the file's directory.  The passphrase itself is never read from the file:
``--passphrase-file``, ``MDM_CONSOLE_PASSPHRASE``, or a prompt.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console_proxy.client.errors import ConsoleError

SETTINGS = ("proxy", "identity", "cert", "key", "ca", "passphrase_file", "timeout")
"""The settings a configuration file may hold (and their MDM_CONSOLE_* variables)."""

_PATHS = frozenset(("identity", "cert", "key", "ca", "passphrase_file"))
ENV_PREFIX = "MDM_CONSOLE_"
PASSPHRASE_ENV = "MDM_CONSOLE_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
"""The environment variable that may hold the identity's passphrase."""


class SettingsError(ConsoleError):
    """A setting is missing or unusable (a usage error: exit status 2)."""


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/mdm-console/config.toml`` (``~/.config`` without the variable)."""
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mdm-console" / "config.toml"


@dataclass(frozen=True)
class Settings:
    """The resolved connection settings; ``sources`` says where each came from."""

    proxy: str | None = None
    identity: str | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    passphrase_file: str | None = None
    timeout: float = 30.0
    sources: tuple[tuple[str, str], ...] = ()

    def require_proxy(self) -> str:
        """The proxy URL, or a :class:`SettingsError` saying the three ways to give it."""
        if not self.proxy:
            raise SettingsError(
                "no proxy address given",
                "give --proxy https://HOST:8443, set MDM_CONSOLE_PROXY, or write "
                "proxy = \"https://HOST:8443\" in ~/.config/mdm-console/config.toml")
        return self.proxy


def _read_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"the configuration file {path} does not exist",
                                "check --config or MDM_CONSOLE_CONFIG") from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read the configuration file {path}: {exc}",
                            "fix the file (TOML: proxy = \"https://host:8443\" ...)") from None
    section = data.get("console", data)
    unknown = sorted(set(section) - set(SETTINGS) - {"console"})
    if unknown:
        raise SettingsError(f"unknown setting(s) in {path}: {', '.join(unknown)}",
                            f"the settings are: {', '.join(SETTINGS)}")
    values: dict[str, Any] = {}
    for name in SETTINGS:
        if name in section:
            value = section[name]
            if name in _PATHS and isinstance(value, str):
                value = str(path.parent / os.path.expanduser(value))
            values[name] = value
    return values


def resolve(flags: Mapping[str, Any], env: Mapping[str, str],
            config: str | None = None) -> Settings:
    """Merge ``flags`` (None: not given), ``env`` and the configuration file."""
    explicit = config or env.get(ENV_PREFIX + "CONFIG")
    path = Path(os.path.expanduser(explicit)) if explicit else default_config_path(env)
    from_file = _read_file(path, explicit=bool(explicit))
    values: dict[str, Any] = {}
    sources: list[tuple[str, str]] = []
    for name in SETTINGS:
        for origin, value in ((f"--{name.replace('_', '-')}", flags.get(name)),
                              (ENV_PREFIX + name.upper(), env.get(ENV_PREFIX + name.upper())),
                              (str(path), from_file.get(name))):
            if value not in (None, ""):
                values[name] = os.path.expanduser(value) if isinstance(value, str) and (
                    name in _PATHS) else value
                sources.append((name, origin))
                break
    try:
        timeout = float(values.pop("timeout", 30.0))
    except (TypeError, ValueError):
        raise SettingsError("the timeout must be a number of seconds",
                            "give e.g. --timeout 30") from None
    return Settings(timeout=timeout, sources=tuple(sources),
                    **{k: str(v) for k, v in values.items()})
