"""How ``mdm-console`` words its resources: pages as tables, targets, requests, live events.

The primitives (cells, tables, fields, JSON) are in :mod:`console_proxy.console.output`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from console_proxy.client.models import Event
from console_proxy.console import output
from console_proxy.console.context import Context, Exit


def show_page(ctx: Context, page: Any, headers: Sequence[str],
              row: Callable[[Any], Sequence[Any]]) -> int:
    """Print a page of results: JSON, or a table with ``row`` per item and the next cursor."""
    if ctx.json:
        output.dump(ctx.out, page.raw)
        return Exit.OK
    output.table(ctx.out, headers, [row(item) for item in page.items])
    output.more(ctx.out, page.next)
    return Exit.OK


def target_text(target: Mapping[str, Any]) -> str:
    """A command's target in words: a device, a group's devices or the whole fleet."""
    if "device" in target:
        return f"device {target['device']}"
    if "group" in target:
        return f"every device of group {target['group']}"
    return "the whole fleet"


def request_text(request: Mapping[str, Any]) -> str:
    """An approval's request in words (a command and its target), else its JSON."""
    command = request.get("command")
    target = request.get("target")
    if isinstance(command, str) and isinstance(target, dict):
        return f"{command} to {target_text(target)}"
    return output.cell(dict(request))


def event_line(event: Event) -> str:
    """One live event as a line for people."""
    data = event.data
    at = output.cell(data.get("at"))
    if event.event == "alert":
        details = data.get("details")
        return (f"{at}  ALERT {data.get('kind')}  device {data.get('imei')}"
                + (f"  {output.cell(details)}" if details else ""))
    if event.event == "command":
        note = f"  {data['note']}" if data.get("note") else ""
        return (f"{at}  command {data.get('command_id')}  {data.get('opcode')}  device "
                f"{data.get('imei')}  {data.get('from') or '-'} -> {data.get('to')}  "
                f"({data.get('event')}){note}")
    return f"{at}  {event.event}  {output.cell(data)}"
