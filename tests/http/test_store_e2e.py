"""The callback endpoints on the REAL message store (blobstore on embedded PostgreSQL).

Real HTTP on loopback, real DatabasePool threads, real commits: a database
outage answers 503, and the gateway's retry lands exactly once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from blobstore.config import DatabaseConfig
from blobstore.database import create_store_engine
from blobstore.pool import DatabasePool
from blobstore.schema import messages
from mepl.http_store import blobstore_callback_store
from tests.http.helpers import TOKEN, Listener, async_test
from tests.support.pg import admin_execute, migrated_database

KANNEL_MO = (f"token={TOKEN}&id=5f0c-0001&from=447700900123&to=447700900001"
             "&text=%01%02sig&udh=%06%05%04%0B%84%23%F0&coding=1&smsc=carrier_a&time=1795330800")


class RealStoreTest(TestCase):
    def setUp(self) -> None:
        self.url = migrated_database("http")
        self.dbname = self.url.split("?", 1)[0].rsplit("/", 1)[1]
        config = DatabaseConfig(url=self.url, pool_size=2, connect_timeout_s=2,
                                retry_attempts=2, retry_backoff_ms=10)
        self.engine = create_store_engine(self.url, config)
        self.pool = DatabasePool(self.engine, reactor, max_threads=2, retry_attempts=2,
                                 retry_backoff_s=0.01)
        self.pool.start()
        self.addCleanup(self.engine.dispose)
        self.addCleanup(self.pool.stop)
        self.addCleanup(self._allow_connections)
        self.store = blobstore_callback_store(self.pool)
        self.srv = Listener(self, self.store)

    def _allow_connections(self) -> None:
        admin_execute(f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS true')

    def _take_database_down(self) -> None:
        admin_execute(f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS false')
        admin_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE datname = '{self.dbname}'")

    def _rows(self, **where: Any) -> list[Any]:
        query = select(messages).where(*(getattr(messages.c, k) == v for k, v in where.items()))
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(messages.c.id)).all())

    @async_test
    async def test_database_down_answers_503_and_the_retry_lands_exactly_once(self) -> None:
        url = self.srv.url("kannel1", "inbound", KANNEL_MO)
        self._take_database_down()
        code, _, body = await self.srv.client.fetch("GET", url)
        self.assertEqual((code, body), (503, b""))
        self.assertEqual(self.srv.seen.inbound, [])
        self.flushLoggedErrors()
        self._allow_connections()
        for _ in range(2):  # Kannel's retry, and one more (a duplicate)
            code, _, _ = await self.srv.client.fetch("GET", url)
            self.assertEqual(code, 200)
        rows = self._rows(link="kannel1")
        self.assertEqual(len(rows), 1)
        row = rows[0]
        self.assertEqual((row.direction, row.channel, row.kind, row.external_id),
                         ("in", "http", "mo", "mo:5f0c-0001"))
        payload = bytes(row.payload)  # the request itself, as one BLOB
        self.assertTrue(payload.startswith(b"GET /gateways/kannel1/inbound?token=REDACTED&"))
        self.assertIn(b"text=%01%02sig", payload)
        self.assertNotIn(TOKEN.encode(), payload)
        self.assertEqual(row.peer, "127.0.0.1")
        self.assertEqual(len(self.srv.seen.inbound), 1)
        self.assertEqual(self.srv.seen.inbound[0][1].message_id, row.id)

    @async_test
    async def test_a_token_in_any_encoding_never_reaches_the_database(self) -> None:
        queries = [KANNEL_MO.replace("token=", "%74oken="),
                   KANNEL_MO.replace("token=", "to%6Ben=").replace("5f0c-0001", "5f0c-0002"),
                   KANNEL_MO.replace("token=", "%74oken=").replace("coding=1", "coding=9")]
        for query in queries:
            await self.srv.client.fetch("GET", self.srv.url("kannel1", "inbound", query))
        rows = self._rows(link="kannel1")
        self.assertEqual([r.kind for r in rows], ["mo", "mo", "malformed"])
        for row in rows:
            self.assertNotIn(TOKEN.encode(), bytes(row.payload))
            self.assertNotIn(TOKEN, row.error or "")

    @async_test
    async def test_a_nul_in_a_gateway_id_is_stored_malformed_and_spoils_no_batch(self) -> None:
        bad = self.srv.url("kannel1", "inbound", KANNEL_MO.replace("5f0c-0001", "5f0c%00"))
        good = self.srv.url("kannel1", "inbound", KANNEL_MO)
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.srv.client.fetch("GET", url))
             for url in (bad, good, bad)])
        self.assertEqual([code for code, _, _ in results], [400, 200, 400])
        rows = self._rows(link="kannel1")
        self.assertEqual(sorted(r.kind for r in rows), ["malformed", "malformed", "mo"])
        self.assertTrue(all("NUL" in r.error for r in rows if r.kind == "malformed"))

    @async_test
    async def test_malformed_callback_is_committed_with_its_error(self) -> None:
        body = b"id=j-1&from=447700900123&to=84433&coding=zz&content=x"
        code, _, answer = await self.srv.client.fetch(
            "POST", self.srv.url("jasmin1", "inbound"), body,
            {"Authorization": "Basic amFzbWluOmphc21pbi1wYXNzd29yZC14eXo=",
             "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(code, 400)
        self.assertIn(b"field 'coding'", answer)
        (row,) = self._rows(link="jasmin1")
        self.assertEqual(row.kind, "malformed")
        self.assertTrue(bytes(row.payload).startswith(b"POST /gateways/jasmin1/inbound HTTP/1.1"))
        self.assertTrue(bytes(row.payload).endswith(b"\r\n\r\n" + body))
        self.assertNotIn(b"authorization", bytes(row.payload).lower())
        self.assertIn("coding", row.error)

    def test_batch_mixing_new_stored_repeated_and_malformed_rows(self) -> None:
        from datetime import UTC, datetime

        from mepl.http_store import store_callbacks_txn
        from sms_gateway.http import RawCallback

        def raw(eid: str | None, kind: str = "mo") -> RawCallback:
            return RawCallback("kannel1", kind, "inbound", "GET", "/x", (), b"", "127.0.0.1",  # type: ignore[arg-type]
                               datetime.now(UTC), eid, None if eid else "bad")

        with self.engine.begin() as conn:
            (first,) = store_callbacks_txn(conn, [raw("a")])
        with self.engine.begin() as conn:
            out = store_callbacks_txn(conn, [raw("a"), raw("b"), raw(None, "malformed"),
                                             raw("b"), raw("a", "dlr"), raw(None, "malformed")])
        self.assertEqual(out[0], first.__class__(first.message_id, True))
        self.assertEqual([o.duplicate for o in out], [True, False, False, True, False, False])
        self.assertEqual(out[3].message_id, out[1].message_id)
        self.assertEqual(len({o.message_id for o in out}), 5)
        self.assertEqual(len(self._rows(link="kannel1")), 5)

    @async_test
    async def test_the_same_callback_twice_in_one_batch_is_one_row(self) -> None:
        url = self.srv.url("kannel1", "inbound", KANNEL_MO)
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.srv.client.fetch("GET", url)) for _ in range(3)])
        self.assertEqual([code for code, _, _ in results], [200, 200, 200])
        self.assertEqual(len(self._rows(link="kannel1")), 1)
        self.assertEqual(len(self.srv.seen.inbound), 1)

    @async_test
    async def test_concurrent_callbacks_are_group_committed_each_before_its_reply(self) -> None:
        urls = [self.srv.url("kannel1", "inbound", KANNEL_MO.replace("5f0c-0001", f"id-{i}"))
                for i in range(40)]
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.srv.client.fetch("GET", u)) for u in urls])
        self.assertEqual({code for code, _, _ in results}, {200})
        with self.engine.connect() as conn:
            count = conn.execute(select(func.count()).select_from(messages)).scalar_one()
        self.assertEqual(count, 40)
        self.assertLessEqual(self.store.batches, 40)
        self.assertEqual(len({s.message_id for _, s in self.srv.seen.inbound}), 40)
