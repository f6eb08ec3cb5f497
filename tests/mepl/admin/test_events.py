"""The live event stream: live delivery, Last-Event-ID resume, across instances, back-pressure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from blobstore.pool import SyncPool
from mepl.admin.events import EventHub, EventStream, parse_last_event_id
from tests.mepl.admin.support import IMEIS, ApiWorld
from tests.support.pg import migrated_database

FAST = {"poll_s": 0.1, "keepalive_s": 0.3}


class LiveStreamTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.w = ApiWorld(config=FAST)
        self.w.start()
        self.addCleanup(self.w.stop)
        self.w.add_devices(IMEIS[0], IMEIS[1])

    def lock(self, world: ApiWorld, imei: str) -> Deferred[Any]:
        return world.request("POST", "/v1/commands", {"command": "lock",
                                                      "target": {"device": imei}})

    @inlineCallbacks
    def test_events_arrive_live_and_a_resume_skips_what_was_seen(self) -> Any:
        response, sink = yield self.w.stream()
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type")[0],
                         "text/event-stream; charset=utf-8")
        yield sink.wait_for(b": stream open")
        first = yield self.lock(self.w, IMEIS[0])
        yield sink.wait_for(b'"to":"queued"')
        self.w.sql("INSERT INTO security_events (device_id, kind) SELECT id, 'alert:lost' "
                   "FROM devices WHERE imei = :i", i=IMEIS[1])
        yield sink.wait_for(b"event: alert")
        yield sink.wait_for(b": keep-alive")
        events = sink.events()
        self.assertEqual([e["event"] for e in events], ["command", "alert"])
        self.assertIn(f'"command_id":{first.body["queued"]["command_id"]}', events[0]["data"])
        self.assertIn(IMEIS[1], events[1]["data"])
        last = events[-1]["id"]
        self.assertRegex(last, r"^c\d+,s\d+$")
        sink.transport.stopProducing()
        yield sink.done
        second = yield self.lock(self.w, IMEIS[1])
        _, resumed = yield self.w.stream(last_event_id=last)
        yield resumed.wait_for(b'"to":"queued"')
        again = resumed.events()
        self.assertEqual(len(again), 1)
        self.assertIn(f'"command_id":{second.body["queued"]["command_id"]}', again[0]["data"])
        resumed.transport.stopProducing()
        audited = self.w.sql("SELECT count(*) FROM audit WHERE action = 'events.watch'")
        self.assertEqual(audited, 2)

    @inlineCallbacks
    def test_a_stream_on_one_instance_sees_commands_made_through_another(self) -> Any:
        other = ApiWorld(url=self.w.url, key=self.w.key, config=FAST)
        other.start()
        self.addCleanup(other.stop)
        _, sink = yield other.stream(f"/v1/events?device={IMEIS[1]}")
        yield sink.wait_for(b": stream open")
        yield self.lock(self.w, IMEIS[0])
        yield self.lock(self.w, IMEIS[1])
        yield sink.wait_for(b"event: command")
        events = sink.events()
        self.assertEqual(len(events), 1)
        self.assertIn(IMEIS[1], events[0]["data"])
        sink.transport.stopProducing()

    @inlineCallbacks
    def test_the_device_filter_must_name_a_known_device(self) -> Any:
        response, sink = yield self.w.stream("/v1/events?device=353918058450947")
        self.assertEqual(response.code, 404)
        yield sink.done


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abortConnection(self) -> None:
        self.aborted = True


class FakeRequest:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.producer: Any = None
        self.finished: Deferred[None] = Deferred()
        self.channel = type("Channel", (), {"transport": FakeTransport()})()

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def notifyFinish(self) -> Deferred[None]:
        return self.finished

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def text(self) -> str:
        return b"".join(self.written).decode()


class BackPressureTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = create_engine(migrated_database("sse"))
        self.addCleanup(self.engine.dispose)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO devices (imei) VALUES ('{IMEIS[0]}')")

    def alert(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO security_events (device_id, kind) "
                                 "SELECT id, 'alert:lost' FROM devices")

    def test_a_paused_client_gets_nothing_more_and_is_dropped_when_paused_too_long(
            self) -> None:
        clock, request, hub = Clock(), FakeRequest(), EventHub()
        stream = EventStream(request, runner=SyncPool(self.engine), clock=clock, hub=hub,
                             device_id=None, cursor=(0, 0), keepalive_s=15, poll_s=1,
                             max_paused_s=30)
        stream.start()
        self.alert()
        clock.advance(1)
        self.assertEqual(request.text().count("event: alert"), 1)
        request.producer.pauseProducing()
        self.alert()
        hub.wake()
        clock.advance(20)
        self.assertEqual(request.text().count("event: alert"), 1)
        self.assertNotIn("keep-alive", request.text())
        request.producer.resumeProducing()
        clock.advance(0)
        self.assertEqual(request.text().count("event: alert"), 2)
        request.producer.pauseProducing()
        clock.advance(29)
        self.assertFalse(request.channel.transport.aborted)
        clock.advance(1)
        self.assertTrue(request.channel.transport.aborted)
        self.assertTrue(stream.stopped)
        self.assertNotIn(stream, hub.streams)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_keep_alives_go_out_every_15_seconds(self) -> None:
        clock, request = Clock(), FakeRequest()
        stream = EventStream(request, runner=SyncPool(self.engine), clock=clock,
                             hub=EventHub(), device_id=None, cursor=(None, None))
        stream.start()
        clock.advance(14.9)
        self.assertNotIn("keep-alive", request.text())
        clock.advance(0.1)
        self.assertEqual(request.text().count(": keep-alive"), 1)
        clock.advance(15)
        self.assertEqual(request.text().count(": keep-alive"), 2)
        request.finished.callback(None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_last_event_ids_are_read_in_every_form(self) -> None:
        self.assertEqual(parse_last_event_id("c12,s4"), (12, 4))
        self.assertEqual(parse_last_event_id("c12"), (12, None))
        self.assertEqual(parse_last_event_id("s4"), (None, 4))
        self.assertEqual(parse_last_event_id("garbage"), (None, None))
        self.assertEqual(parse_last_event_id(None), (None, None))
