"""The command lifecycle as one transition table (pure; the one writer is in ``blobstore``).

Every change of a command's state is an *event* applied to its current
state through :data:`TABLE`.  A pair the table does not list raises
:class:`InvalidTransition` (as h11 does): a state machine that silently
ignores what it did not expect hides bugs.  Events that come from the
outside world (receipts, replies) may meet a command in any state, so the
table lists them for every state, most of them as "stay where you are".

States::

    queued -> sending -> sent -> delivered -> done | refused
       |         |        |         |
       +---------+--------+---------+--> expired / failed / cancelled

A reply is applied whatever the state: the device executed the command
(``done``) or said why not (``refused``), even after the server gave up on
it (``expired``, ``failed``, ``cancelled``): the history then says
"executed after expiry" rather than dropping what the device did.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class State(enum.StrEnum):
    """A command's state (the ``commands.state`` column)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Event(enum.StrEnum):
    """What happened to a command (the ``command_events.event`` column)."""

    CREATE = "create"
    CLAIM = "claim"                      # a dispatcher took it
    SEAL_FAILED = "seal_failed"          # no number, retired device, arguments do not encode
    SUBMITTED = "submitted"              # every part accepted by the SMSC / gateway
    SUBMIT_RETRY = "submit_retry"        # temporary submit failure: back to the queue
    SUBMIT_FAILED = "submit_failed"      # permanent submit failure
    DELIVERED = "delivered"              # every part's receipt says delivered
    DELIVERY_FAILED = "delivery_failed"  # a part's final receipt says not delivered
    REPLY_OK = "reply_ok"                # verified reply, status ok
    REPLY_REFUSED = "reply_refused"      # verified reply, status failed/unsupported/...
    EXPIRE = "expire"                    # past not-after
    RELEASE = "release"                  # the claiming process died before sending
    RESEND = "resend"                    # no reply in time: the same frame again
    CANCEL = "cancel"                    # an admin withdrew it before it was sent


TERMINAL = frozenset({State.DONE, State.REFUSED, State.FAILED, State.EXPIRED,
                      State.CANCELLED})
UNFINISHED = frozenset(State) - TERMINAL
GAVE_UP = frozenset({State.FAILED, State.EXPIRED, State.CANCELLED})


class InvalidTransition(Exception):  # noqa: N818 - named as the event it reports
    """An event the table does not allow in the command's current state."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"a {state} command cannot take the event {event!r}")
        self.state = state
        self.event = event


def _build() -> Mapping[tuple[State, Event], State]:
    s, e = State, Event
    table: dict[tuple[State, Event], State] = {
        (s.QUEUED, e.CLAIM): s.SENDING,
        (s.QUEUED, e.CANCEL): s.CANCELLED,
        (s.SENDING, e.SEAL_FAILED): s.FAILED,
        (s.SENDING, e.SUBMITTED): s.SENT,
        (s.SENDING, e.SUBMIT_RETRY): s.QUEUED,
        (s.SENDING, e.SUBMIT_FAILED): s.FAILED,
        (s.SENDING, e.RELEASE): s.QUEUED,
        (s.SENT, e.RESEND): s.QUEUED,
        (s.DELIVERED, e.RESEND): s.QUEUED,
        (s.SENT, e.DELIVERED): s.DELIVERED,
        (s.SENT, e.DELIVERY_FAILED): s.QUEUED,
    }
    for state in UNFINISHED:
        table[(state, e.EXPIRE)] = s.EXPIRED
    for state in State:
        # The device's word is final, whatever the server thought.
        table[(state, e.REPLY_OK)] = s.DONE if state is not s.REFUSED else s.REFUSED
        table[(state, e.REPLY_REFUSED)] = s.REFUSED if state is not s.DONE else s.DONE
        # Receipts for earlier attempts or finished commands change nothing.
        table.setdefault((state, e.DELIVERED), state)
        table.setdefault((state, e.DELIVERY_FAILED), state)
        # A submit recorded after a reply already finished the command.
        if state in TERMINAL:
            table[(state, e.SUBMITTED)] = state
    return table


TABLE: Mapping[tuple[State, Event], State] = _build()
"""(current state, event) -> next state; a pair not listed is an invalid transition."""


def next_state(state: str, event: str) -> State:
    """The state ``event`` moves a command in ``state`` to; raises :class:`InvalidTransition`."""
    try:
        return TABLE[(State(state), Event(event))]
    except (KeyError, ValueError):
        raise InvalidTransition(state, event) from None


def sources(event: str) -> frozenset[State]:
    """The states from which ``event`` changes a command's state (for set-based updates)."""
    ev = Event(event)
    return frozenset(st for (st, e), to in TABLE.items() if e is ev and to is not st)


def target(event: str) -> State:
    """The one state ``event`` leads to from every state in :func:`sources` (bulk events)."""
    targets = {TABLE[(st, Event(event))] for st in sources(event)}
    if len(targets) != 1:
        raise ValueError(f"event {event!r} has no single target state: {sorted(targets)}")
    return targets.pop()


def note(state: str, event: str) -> str | None:
    """A remark for the history when ``event`` lands on a command the server gave up on."""
    if Event(event) in (Event.REPLY_OK, Event.REPLY_REFUSED) and State(state) in GAVE_UP:
        return f"executed after {state}" if Event(event) is Event.REPLY_OK \
            else f"refused after {state}"
    return None
