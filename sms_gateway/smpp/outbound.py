"""Outbound bookkeeping for a bind (pure): jobs, parts, the in-order resend queue.

A job is one :class:`OutboundMessage`; each part is one submit_sm.  Parts are
sent in order; parts to resend (throttled, unanswered) go back ahead of every
part never sent, in their original order, so a throttling storm never
reorders traffic.  Each job's Deferred fires exactly once.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

from twisted.internet.defer import Deferred

from sms_gateway.channel import OutboundMessage, SubmitResult
from sms_gateway.errors import SubmitError
from sms_gateway.smpp import codec
from sms_gateway.smpp.codec import ShortMessage
from sms_gateway.smpp.config import SmppLinkConfig
from sms_gateway.smpp.segmentation import PartSpec


@dataclass(eq=False, slots=True)
class Job:
    """One message being submitted."""

    message: OutboundMessage
    deferred: Deferred[SubmitResult]
    ids: list[str | None]
    remaining: int
    done: bool = False


@dataclass(eq=False, slots=True)
class Part:
    """One submit_sm of a job; ``order`` is its place in the link's traffic."""

    order: int
    job: Job
    index: int
    body: bytes
    attempts: int = 0

    def __lt__(self, other: Part) -> bool:
        return self.order < other.order


@dataclass(eq=False)
class SubmitQueue:
    """Parts waiting to be sent: resends first (in original order), then new parts."""

    fresh: deque[Part] = field(default_factory=deque)
    retry: list[Part] = field(default_factory=list)
    counter: int = 0

    def add_job(self, job: Job, bodies: list[bytes]) -> None:
        """Queue every part of ``job``."""
        for index, body in enumerate(bodies):
            self.counter += 1
            self.fresh.append(Part(self.counter, job, index, body))

    def requeue(self, part: Part) -> None:
        """Put ``part`` back, ahead of never-sent parts, in original order."""
        heapq.heappush(self.retry, part)

    def pop(self) -> Part | None:
        """The next part to send, skipping parts of finished jobs."""
        while self.retry:
            part = heapq.heappop(self.retry)
            if not part.job.done:
                return part
        while self.fresh:
            part = self.fresh.popleft()
            if not part.job.done:
                return part
        return None

    def jobs(self) -> list[Job]:
        """Unfinished jobs with parts still queued."""
        seen: dict[int, Job] = {}
        for part in (*self.retry, *self.fresh):
            if not part.job.done:
                seen.setdefault(id(part.job), part.job)
        return list(seen.values())

    def __len__(self) -> int:
        return len(self.fresh) + len(self.retry)


def validity_period(validity: timedelta | None) -> str:
    """SMPP relative time ``YYMMDDhhmmss000R`` (days capped at 99), or ``""``."""
    if validity is None:
        return ""
    total = max(0, int(validity.total_seconds()))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"0000{min(days, 99):02d}{hours:02d}{minutes:02d}{seconds:02d}000R"


def submit_bodies(message: OutboundMessage, parts: list[PartSpec],
                  config: SmppLinkConfig) -> list[bytes]:
    """Encode the submit_sm bodies for the parts of ``message``."""
    source = message.source if message.source is not None else config.source_addr
    source = source.lstrip("+")
    if source and not source.isdigit():
        s_ton, s_npi = 5, 0  # alphanumeric sender
    else:
        s_ton, s_npi = config.source_addr_ton, config.source_addr_npi
    dest = message.destination.lstrip("+")
    validity = validity_period(message.validity)
    receipt = 1 if message.request_receipt else 0
    return [codec.encode_short_message(ShortMessage(
        service_type="", source_addr_ton=s_ton, source_addr_npi=s_npi, source_addr=source,
        dest_addr_ton=config.dest_addr_ton, dest_addr_npi=config.dest_addr_npi,
        destination_addr=dest, esm_class=part.esm_class, validity_period=validity,
        registered_delivery=receipt, data_coding=message.data_coding,
        short_message=part.short_message, tlvs=part.tlvs)) for part in parts]


TEMPORARY_STATUSES = frozenset((codec.ESME_RSYSERR, codec.ESME_RMSGQFUL, codec.ESME_RTHROTTLED,
                                codec.ESME_RX_T_APPN, codec.ESME_RSUBMITFAIL,
                                codec.ESME_RINVBNDSTS))
THROTTLE_STATUSES = frozenset((codec.ESME_RTHROTTLED, codec.ESME_RMSGQFUL))


def submit_error(status: int, link: str) -> SubmitError:
    """The typed error for a refused submit_sm."""
    temporary = status in TEMPORARY_STATUSES
    return SubmitError(f"SMSC refused submit_sm with status 0x{status:08x}",
                       temporary=temporary, code=status, link=link)
