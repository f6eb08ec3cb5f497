"""How ``mdm-console`` prints: aligned tables for people, JSON for scripts, errors with a hint."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO


def cell(value: Any) -> str:
    """One table cell: ``-`` for nothing, lists joined by commas, times shortened."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return short_time(str(value))


def short_time(text: str) -> str:
    """An ISO 8601 time without its fraction of a second (``2026-01-02T03:04:05+00:00``)."""
    if len(text) >= 20 and text[4] == "-" and text[10] == "T" and text[19] == ".":
        end = 20
        while end < len(text) and text[end].isdigit():
            end += 1
        return text[:19] + text[end:]
    return text


def table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[Any]],
          empty: str = "(none)") -> None:
    """Print ``rows`` under ``headers``, columns aligned (the last one left free)."""
    if not rows:
        print(empty, file=out)
        return
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    for row in (list(headers), *text):
        line = "  ".join(v.ljust(widths[i]) if i < len(row) - 1 else v
                         for i, v in enumerate(row))
        print(line.rstrip(), file=out)


def fields(out: TextIO, pairs: Sequence[tuple[str, Any]]) -> None:
    """Print ``name: value`` lines, names aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    for name, value in pairs:
        print(f"{name + ':':<{width + 1}} {cell(value)}", file=out)


def dump(out: TextIO, data: Any) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=True, default=str), file=out)


def more(out: TextIO, cursor: str | None) -> None:
    """Say how to get the next page, if there is one."""
    if cursor is not None:
        print(f"(more: add --after {cursor})", file=out)
