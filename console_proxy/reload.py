"""Watching files for changes: the TLS files are reloaded when their stamps change.

On each :meth:`FileWatcher.check` (the service calls it every few seconds of
its injected clock), each file's (mtime, size, inode) is compared with the
last seen; any change returns True once.  A missing file counts as a change
too (and the reload will say what is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

Stamp = tuple[int, int, int] | None


def stamps(paths: Sequence[Path]) -> tuple[Stamp, ...]:
    """(mtime_ns, size, inode) of each path, None for one that cannot be read."""
    result: list[Stamp] = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            result.append(None)
        else:
            result.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(result)


class FileWatcher:
    """Tells whether any of ``paths`` changed since the last check."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        self._seen = stamps(self.paths)

    def check(self) -> bool:
        """Compare now; True if anything changed since the last check."""
        now = stamps(self.paths)
        if now == self._seen:
            return False
        self._seen = now
        return True
