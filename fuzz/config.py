"""The configuration loader: TOML text, TOML-shaped data and ``MEPL_*`` environment overrides.

Contract (:mod:`mepl.config`): :func:`~mepl.config.build` (through
:func:`mepl.settings.load_settings`) and
:func:`~mepl.config.apply_env_overrides` raise only
:class:`~mepl.config.ConfigError`, naming a key, for any data TOML can
express (tables, arrays, strings, integers of any size, floats including
nan and inf, booleans, dates and times).  Keys are drawn mostly from the
real configuration's field names, so that the checks behind them are reached.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz._common import Reader, expect, instrumented, run

with instrumented(__name__ == "__main__"):
    from mepl.config import ConfigError, apply_env_overrides
    from mepl.settings import Settings, load_settings

TARGET = "config"


def _field_names(cls: Any, seen: set[str]) -> None:
    for f in dataclasses.fields(cls):
        seen.add(f.name)
        for tp in (typing.get_type_hints(cls)[f.name], *typing.get_args(
                typing.get_type_hints(cls)[f.name])):
            for inner in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(inner) and isinstance(inner, type):
                    _field_names(inner, seen)


_names: set[str] = set()
_field_names(Settings, _names)
KEYS = (*sorted(_names), "carrier_a", "kannel1", "x", "")
STRINGS = ("", "+447700900000", "84433", "127.0.0.1", "10.0.0.0/33", "~nosuchuser-mepl/x",
           "~/keys", "nan", "inf", "-1", "0x10", "1_000", "true", "off", "postgresql://u@h/db",
           "mysql://x", "postgresql://[::1", "kannel", "json", "hmac", "token", "basic", "udh",
           "hex", "GB", "uk", "transceiver", "a-long-random-token-0123", "\x00", "é" * 20,
           "9" * 5000, "http://gw/send", "resubmit")
FLOATS = (0.0, -1.0, 1e-9, 1e308, float("inf"), float("-inf"), float("nan"), 0.5)
INTS = (0, 1, -1, 8, 65535, 65536, 10**30, -(10**30), 2**63, 16, 500)


def value(r: Reader, depth: int) -> Any:
    """One TOML value."""
    kind = r.u8() % (10 if depth < 4 else 7)
    if kind == 0:
        return r.pick(STRINGS)
    if kind == 1:
        return r.utf8(24)
    if kind == 2:
        return r.pick(INTS) if r.flag() else int.from_bytes(r.take(r.u8() % 12), "big",
                                                            signed=True)
    if kind == 3:
        return r.pick(FLOATS)
    if kind == 4:
        return r.flag()
    if kind == 5:
        return r.pick((dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.date(2026, 1, 1),
                       dt.time(12, 0), dt.datetime(2026, 1, 1)))
    if kind == 6:
        return r.pick(KEYS)
    if kind in (7, 8):
        return table(r, depth + 1)
    return [value(r, depth + 1) for _ in range(r.u8() % 4)]


def table(r: Reader, depth: int) -> dict[str, Any]:
    """A TOML table with keys mostly from the real configuration."""
    out: dict[str, Any] = {}
    for _ in range(r.u8() % 6):
        key = r.pick(KEYS) if r.u8() % 8 else r.utf8(8)
        out[key] = value(r, depth)
    return out


def check(data: Any) -> None:
    """``load_settings`` raises nothing but ConfigError."""
    expect(lambda: load_settings(data), ConfigError)


def one_input(data: bytes) -> None:
    """First octet: TOML text, structured data, or data plus environment overrides."""
    r = Reader(data)
    mode = r.u8() % 3
    if mode == 0:
        try:
            parsed = tomllib.loads(r.rest().decode("utf-8", "replace"))
        except tomllib.TOMLDecodeError:
            return
        check(parsed)
        return
    doc = table(r, 0)
    if r.flag():
        doc["dispatch"] = {"server_number": r.pick(STRINGS), **table(r, 2)}
    if mode == 2:
        environ = {}
        for _ in range(r.u8() % 4):
            name = "MEPL_" + "__".join(r.pick(KEYS).upper() for _ in range(1 + r.u8() % 3))
            environ[r.pick((name, "MEPL_DATABASE_URL", "MEPL_STATE_DIR",
                            "MEPL_DEFAULT_REGION", "MEPL_X"))] = r.pick(STRINGS)
        merged = expect(lambda: apply_env_overrides(doc, environ), ConfigError)
        if merged is None:
            return
        doc = merged
    check(doc)


def seeds() -> list[bytes]:
    """A valid configuration as TOML text, and structured near-misses."""
    toml = (b'[dispatch]\nserver_number = "+447700900000"\n[smpp.links.a]\nhost = "h"\n'
            b'port = 2775\nsystem_id = "s"\n[http.gateways.k]\nformat = "kannel"\n'
            b'auth = "token"\nsecret = "a-long-random-token-0123"\n[signing]\n'
            b'keys_dir = "~/k"\n')
    return [b"\x00" + toml, b"\x01\x02\x00\x07\x00\x01\x01\x00\x00", b"\x02\x03" + bytes(range(40))]


if __name__ == "__main__":
    run(TARGET, one_input, seeds)
