"""What one bind holds in memory, and the gate that stops reading when it is too much (pure).

A bind buffers two things: PDU records handed to ``pdu_sink`` whose Deferred
has not fired yet (not stored yet), and deliver_sm handed to their callback
(or held for an early receipt) and not answered yet.  :class:`Backlog` counts
both.  The gate closes when reading one more PDU could take the count over
the cap (a PDU read adds at most :data:`PER_PDU`: its own record and either
an answer's record or a callback in progress), and opens again once the
count is down to the low-water mark.  While it is closed the bind reads
nothing more from the transport, so the SMSC waits for its answers (TCP
flow control) instead of MEPL dropping records or growing without bound.
"""

from __future__ import annotations

from collections.abc import Callable

PER_PDU = 2
MIN_CAP = 8


class Backlog:
    """Counts buffered records and unanswered deliver_sm against ``cap``.

    ``low`` (default half the cap) is where a closed gate opens again; then
    ``on_open`` is called.  ``on_close`` is called each time the gate closes.
    """

    def __init__(self, cap: int, *, low: int | None = None,
                 on_open: Callable[[], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        if cap < MIN_CAP:
            raise ValueError(f"the cap must be at least {MIN_CAP}")
        self.cap = cap
        self.low = cap // 2 if low is None else low
        if not 0 <= self.low <= cap - PER_PDU:
            raise ValueError("the low-water mark must be between 0 and the cap minus 2")
        self.on_open = on_open
        self.on_close = on_close
        self.records = 0
        self.inbound = 0
        self.closed = False
        self.peak = 0
        self.closings = 0

    @property
    def total(self) -> int:
        """Records not yet settled plus deliver_sm not yet answered."""
        return self.records + self.inbound

    def allowance(self) -> int:
        """How many PDUs may be read now without going over the cap."""
        return 0 if self.closed else (self.cap - self.total) // PER_PDU

    def room(self) -> int:
        """How many records (one per request we send) may be added now."""
        return 0 if self.closed else max(0, self.cap - self.total)

    def add_record(self) -> None:
        """A record was handed to the sink and is not settled yet."""
        self.records += 1
        self._grew()

    def record_settled(self) -> None:
        """A record's Deferred fired (stored, or given up by the sink)."""
        self.records -= 1
        self._shrank()

    def add_inbound(self) -> None:
        """A deliver_sm was decoded and awaits its answer."""
        self.inbound += 1
        self._grew()

    def inbound_settled(self) -> None:
        """A deliver_sm's callback fired (its answer goes out now, or never)."""
        self.inbound -= 1
        self._shrank()

    def _grew(self) -> None:
        total = self.total
        self.peak = max(self.peak, total)
        if not self.closed and self.cap - total < PER_PDU:
            self.closed = True
            self.closings += 1
            if self.on_close is not None:
                self.on_close()

    def _shrank(self) -> None:
        if self.closed and self.total <= self.low:
            self.closed = False
            if self.on_open is not None:
                self.on_open()
