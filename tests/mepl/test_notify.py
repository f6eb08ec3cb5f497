"""LISTEN/NOTIFY wake-ups from the real database, across connections, surviving a reconnect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from mepl.runtime.notify import NotificationListener
from tests.support.pg import admin_execute, migrated_database

IMEI = "490154203237518"


class NotifyTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("ntf"))
        self.addCleanup(self.engine.dispose)
        self.woken: dict[str, list[Deferred[None]]] = {"mepl_commands": [],
                                                        "mepl_inbound": []}
        self.listener = NotificationListener(self.engine, reactor, {
            name: (lambda name=name: self._woke(name)) for name in self.woken},
            max_backoff_s=0.5)
        self.addCleanup(self.listener.stop)

    def _woke(self, channel: str) -> None:
        waiters, self.woken[channel] = self.woken[channel], []
        for waiter in waiters:
            waiter.callback(None)

    def next_wake(self, channel: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.woken[channel].append(d)
        return d

    def sql(self, statement: str) -> Any:
        with self.engine.begin() as conn:
            result = conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None

    @inlineCallbacks
    def test_a_command_queued_by_another_connection_wakes_the_dispatcher(self) -> Any:
        yield self.listener.start()
        device = self.sql(f"INSERT INTO devices (imei) VALUES ('{IMEI}') RETURNING id")
        woken = self.next_wake("mepl_commands")
        self.sql("INSERT INTO commands (device_id, opcode, requested_by, not_after) "
                 f"VALUES ({device}, 'lock', 'other', now() + interval '1 hour')")
        yield woken

    @inlineCallbacks
    def test_an_inbound_item_queued_or_a_receipt_made_due_wakes_the_worker(self) -> Any:
        yield self.listener.start()
        message = self.sql(
            "INSERT INTO messages (direction, channel, kind, payload, sha256) VALUES "
            "('in', 'smpp', 'dlr', '', sha256(''::bytea)) RETURNING id")
        woken = self.next_wake("mepl_inbound")
        self.sql("INSERT INTO inbound_queue (message_id, kind, state, link, smsc_message_id) "
                 f"VALUES ({message}, 'dlr', 'waiting', 'l1', 'x') RETURNING id")
        yield woken
        woken = self.next_wake("mepl_inbound")
        self.sql("UPDATE inbound_queue SET state = 'pending' WHERE state = 'waiting' "
                 "RETURNING id")
        yield woken

    @inlineCallbacks
    def test_the_listener_reconnects_after_its_connection_is_killed(self) -> Any:
        yield self.listener.start()
        pid = self.sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                       "ORDER BY backend_start DESC LIMIT 1")
        self.assertIsNotNone(pid)
        reconnected = self.next_wake("mepl_commands")  # a (re)connect wakes everyone once
        admin_execute(f"SELECT pg_terminate_backend({pid})")
        yield reconnected
        device = self.sql(f"INSERT INTO devices (imei) VALUES ('{IMEI}') RETURNING id")
        woken = self.next_wake("mepl_commands")
        self.sql("INSERT INTO commands (device_id, opcode, requested_by, not_after) "
                 f"VALUES ({device}, 'lock', 'other', now() + interval '1 hour')")
        yield woken
