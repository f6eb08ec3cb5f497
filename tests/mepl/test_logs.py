"""The log observers: JSON lines with named fields, secrets never, phone numbers masked."""

from __future__ import annotations

import gc
import io
import json
from typing import Any

from twisted.logger import (
    Logger,
    LogLevel,
    LogPublisher,
    formatEventAsClassicLogText,
    formatTime,
)
from twisted.logger._flatten import flattenEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mepl.cli.common import GeneralConfig
from mepl.logs import (
    REDACTED,
    YOUNG_COLLECTION_THRESHOLD,
    ClassicText,
    build_observer,
    freeze_startup_objects,
    is_secret_field,
    redact_event,
)

SECRETS = {"password": "pw-hunter2", "passphrase": "correct horse battery",
           "secret": "s3cr3t-value", "key": "k3y-material", "bind_password": "bindpw77",
           "api_key": "apikey-123", "auth_token": "tok-999"}


def emit(log_format: str, level: str = "info", **fields: Any) -> str:
    """Log one event through the real observer; return what it wrote."""
    out = io.StringIO()
    publisher = LogPublisher(build_observer(level, out, log_format))
    log = Logger(namespace="mepl.test", observer=publisher)
    fmt = fields.pop("fmt", "sent to {msisdn}: {what}")
    log.info(fmt, **fields)
    return out.getvalue()


class JsonLogTests(SynchronousTestCase):
    def test_one_json_object_per_line_with_time_level_namespace_fields_and_message(self) -> None:
        out = emit("json", msisdn="+447700900123", what="lock", attempts=3)
        lines = out.splitlines()
        self.assertEqual(len(lines), 1)
        record = json.loads(lines[0])
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "mepl.test")
        self.assertRegex(record["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
        self.assertEqual(record["what"], "lock")
        self.assertEqual(record["attempts"], 3)
        self.assertEqual(record["message"], "sent to +44********23: lock")
        self.assertEqual(record["msisdn"], "+44********23")

    def test_secret_fields_never_reach_the_output_in_either_format(self) -> None:
        for log_format in ("json", "text"):
            fmt = " ".join(f"{name}={{{name}}}" for name in SECRETS)
            out = emit(log_format, fmt=fmt, **SECRETS)
            for value in SECRETS.values():
                self.assertNotIn(value, out, log_format)
            self.assertIn(REDACTED, out)
        record = json.loads(emit("json", fmt="bind", **SECRETS))
        for name in SECRETS:
            self.assertEqual(record[name], REDACTED)

    def test_phone_numbers_are_masked_in_fields_nested_values_and_literal_text(self) -> None:
        out = emit("json", fmt="reply from +447700900456 ({sender})", sender="447700900789",
                   details={"phone": "+12025550123", "note": "call +33612345678"},
                   numbers=["+447700900111", "+447700900222"])
        for digits in ("447700900456", "447700900789", "12025550123", "33612345678",
                       "447700900111", "447700900222"):
            self.assertNotIn(digits, out)
        record = json.loads(out)
        self.assertEqual(record["sender"], "447*******89")
        self.assertEqual(record["numbers"], ["+44********11", "+44********22"])
        text = emit("text", fmt="reply from +447700900456 ({sender})", sender="+447700900789")
        self.assertNotIn("447700900456", text)
        self.assertNotIn("447700900789", text)
        self.assertIn("+44********89", text)

    def test_names_that_only_name_or_count_a_secret_are_kept(self) -> None:
        self.assertFalse(is_secret_field("key_id"))
        self.assertFalse(is_secret_field("passphrase_file"))
        self.assertTrue(is_secret_field("private_key"))
        self.assertTrue(is_secret_field("smpp_password"))
        event = redact_event({"key_id": 2, "log_format": "x"})
        self.assertEqual(event["key_id"], 2)

    def test_a_failure_is_logged_with_its_traceback_as_one_line(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="mepl.test",
                     observer=LogPublisher(build_observer("info", out, "json")))
        try:
            raise ValueError("bad +447700900123")
        except ValueError:
            log.failure("round failed", Failure())
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        record = json.loads(lines[0])
        self.assertEqual(record["level"], "critical")
        self.assertIn("ValueError", record["traceback"])
        self.assertNotIn("447700900123", lines[0])

    def test_events_below_the_level_are_dropped(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="t", observer=LogPublisher(build_observer("warn", out, "json")))
        log.info("quiet")
        log.warn("loud {n}", n=1)
        self.assertEqual([json.loads(x)["message"] for x in out.getvalue().splitlines()],
                         ["loud 1"])
        self.assertEqual(LogLevel.warn.name, "warn")

    def test_an_unknown_log_format_is_refused_naming_the_choices(self) -> None:
        with self.assertRaises(ValueError) as caught:
            GeneralConfig(log_format="xml")
        self.assertIn("text or json", str(caught.exception))
        with self.assertRaises(ValueError):
            build_observer("info", io.StringIO(), "xml")


class _Shape:
    kind = "shape"

    def name(self) -> str:
        return "called"


def _twisted_line(event: dict[str, Any]) -> str | None:
    return formatEventAsClassicLogText(event, formatTime=formatTime)


class ClassicTextTests(SynchronousTestCase):
    """The text lines are Twisted's own, whichever path made them."""

    def test_every_kind_of_event_gives_twisteds_classic_line(self) -> None:
        base = {"log_time": 1_780_000_000.75, "log_level": LogLevel.info,
                "log_namespace": "mepl.test"}
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            failure = Failure()
        events = [
            {"log_format": "alert {alert} from device {device_id}: lock {lock}",
             "alert": "invalid_sim", "device_id": 7, "lock": None},
            {"log_format": "{n:,} rows in {s:.3f}s, {what!r}", "n": 12345, "s": 0.5,
             "what": "x"},
            {"log_format": "attribute {shape.kind}, item {pair[1]}", "shape": _Shape(),
             "pair": ("a", "b")},
            {"log_format": "call syntax {shape.name()}", "shape": _Shape()},
            {"log_format": "missing {nothing}"},
            {"log_format": "positional {}"},
            {"log_format": "two\nlines"},
            {"log_format": ""},
            {"log_format": None},
            {"log_format": "from a system", "log_system": "smpp,1"},
            {"log_format": "failed: {why}", "why": "boom", "log_failure": failure},
            {"log_format": "no level", "log_level": None},
        ]
        classic = ClassicText()
        for extra in events:
            event = {**base, **extra}
            if extra.get("log_level", 1) is None:
                del event["log_level"]
            self.assertEqual(classic(dict(event)), _twisted_line(dict(event)), extra)
        flattened = {**base, "log_format": "was {what}", "what": "now"}
        flattenEvent(flattened)
        flattened["what"] = "changed after"
        self.assertEqual(classic(dict(flattened)), _twisted_line(dict(flattened)))
        self.assertIn("was now", classic(dict(flattened)) or "")
        no_time = {"log_format": "no time", "log_level": LogLevel.warn}
        self.assertEqual(classic(no_time), _twisted_line(no_time))

    def test_the_time_stamp_follows_the_clock_across_seconds(self) -> None:
        classic = ClassicText()
        for when in (1_780_000_000.1, 1_780_000_000.9, 1_780_000_001.0, 1_779_999_999.5,
                     1_780_000_001.9999997):
            event = {"log_format": "tick", "log_time": when, "log_level": LogLevel.info,
                     "log_namespace": "t"}
            self.assertEqual(classic(event), _twisted_line(event))


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, before[1], before[2])
        assert before[0] < YOUNG_COLLECTION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
