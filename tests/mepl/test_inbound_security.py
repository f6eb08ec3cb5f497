"""Replies and alerts are verified against the database before anything changes."""

from __future__ import annotations

from sqlalchemy import text
from twisted.trial.unittest import SynchronousTestCase

from blobstore.devices import set_device_key_txn
from mepl.runtime.outbound_txn import record_submitted_txn
from signing.alerts import make_alert
from tests.mepl.helpers import World, new_device_key

IMEI_A = "490154203237518"
IMEI_B = "356938035643809"


class InboundSecurityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.w = World.create()
        self.addCleanup(self.w.engine.dispose)
        self.dev_a, self.handset_a = self.w.enrol(IMEI_A, "+447700900101")
        self.dev_b, self.handset_b = self.w.enrol(IMEI_B, "+447700900102")

    def send_lock(self) -> tuple[int, bytes]:
        command_id = self.w.queue(self.dev_a)
        (ready,) = self.w.claim()
        self.w.run(record_submitted_txn, ready, link="l1", channel="smpp",
                   message_ids=["abc"], now=self.w.now)
        return command_id, ready.frame

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def test_verified_reply_completes_its_command_once(self) -> None:
        command_id, frame = self.send_lock()
        reply = self.handset_a.receive(frame, "+447700900000", self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700900101", reply.reply_frame))
        self.assertEqual(self.state(command_id), "done")
        self.w.deliver(self.w.mo("+447700900101", reply.reply_frame))  # resent by the network
        self.assertEqual(self.w.inbound.counts["replies"], 1)
        self.assertEqual(self.w.inbound.counts["replies_duplicate"], 1)

    def test_reply_with_a_flipped_bit_is_rejected_stored_and_changes_nothing(self) -> None:
        command_id, frame = self.send_lock()
        reply = self.handset_a.receive(frame, "+447700900000", self.w.clock.seconds())
        tampered = bytearray(reply.reply_frame)
        tampered[-10] ^= 0x01
        self.w.deliver(self.w.mo("+447700900101", bytes(tampered)))
        self.assertEqual(self.state(command_id), "sent")
        self.assertEqual(self.w.inbound.counts["rejected_bad_signature"], 1)
        self.assertEqual(self.w.scalar(
            "SELECT error FROM messages WHERE kind = 'mo'"), "rejected: bad_signature")

    def test_reply_signed_by_another_device_is_rejected(self) -> None:
        command_id, frame = self.send_lock()
        # Device B signs a "reply" claiming A's IMEI and A's command.
        self.handset_b.imei = IMEI_A
        forged = self.handset_b.receive(frame, "+447700900000", self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700900102", forged.reply_frame))
        self.assertEqual(self.state(command_id), "sent")
        self.assertEqual(sum(v for k, v in self.w.inbound.counts.items()
                             if k.startswith("rejected_")), 1)

    def test_alert_replayed_is_rejected_by_the_counter_window_in_the_database(self) -> None:
        frame = self.handset_a.alert(make_alert("invalid_sim"), self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700900101", frame))
        self.w.deliver(self.w.mo("+447700900101", frame))
        self.assertEqual(self.w.inbound.counts["alert_invalid_sim"], 1)
        self.assertEqual(self.w.inbound.counts["rejected_replayed"], 1)

    def test_alerts_out_of_order_inside_the_window_are_each_accepted_once(self) -> None:
        frames = [self.handset_a.alert(make_alert("invalid_sim"), self.w.clock.seconds())
                  for _ in range(3)]
        for frame in (frames[2], frames[0], frames[1], frames[0]):
            self.w.deliver(self.w.mo("+447700900101", frame))
        self.assertEqual(self.w.inbound.counts["alert_invalid_sim"], 3)
        self.assertEqual(self.w.inbound.counts["rejected_replayed"], 1)

    def security_events(self) -> list[str]:
        with self.w.engine.connect() as conn:
            return [r[0] for r in conn.execute(text(
                "SELECT kind FROM security_events WHERE device_id = :i ORDER BY id"),
                {"i": self.dev_a})]

    def test_sim_swap_alert_without_a_signed_number_never_takes_the_sender_as_the_number(
            self) -> None:
        frame = self.handset_a.alert(make_alert("sim_changed", imsi="234159999999999"),
                                     self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700955555", frame))  # relayed from another number
        self.assertEqual(self.w.scalar("SELECT msisdn FROM devices WHERE id = :i",
                                       i=self.dev_a), "+447700900101")
        self.assertEqual(self.w.scalar("SELECT imsi FROM devices WHERE id = :i",
                                       i=self.dev_a), "234159999999999")
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM commands WHERE device_id = :i AND opcode = 'lock' "
            "AND requested_by = 'policy:sim_changed' AND priority = 10", i=self.dev_a), 1)
        with self.w.engine.connect() as conn:
            kinds = sorted(r[0] for r in conn.execute(text(
                "SELECT kind FROM device_identity_history WHERE device_id = :i"),
                {"i": self.dev_a}))
        self.assertEqual(kinds, ["imsi"])
        self.assertEqual(self.security_events(), ["alert:sim_changed", "unverified_number"])

    def test_sim_swap_alert_moves_the_device_to_its_signed_number_whoever_relays_it(
            self) -> None:
        frame = self.handset_a.alert(make_alert(
            "sim_changed", imsi="234159999999999", msisdn="+447700955555"),
            self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700966666", frame))  # a copy relayed by someone else
        self.assertEqual(self.w.scalar("SELECT msisdn FROM devices WHERE id = :i",
                                       i=self.dev_a), "+447700955555")
        self.assertEqual(self.security_events(), ["alert:sim_changed", "sender_mismatch"])
        with self.w.engine.connect() as conn:
            kinds = sorted(r[0] for r in conn.execute(text(
                "SELECT kind FROM device_identity_history WHERE device_id = :i"),
                {"i": self.dev_a}))
        self.assertEqual(kinds, ["imsi", "msisdn"])
        # The genuine delivery from the new SIM comes second: a replay, no second reaction.
        self.w.deliver(self.w.mo("+447700955555", frame))
        self.assertEqual(self.w.inbound.counts["rejected_replayed"], 1)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM commands WHERE requested_by = 'policy:sim_changed'"), 1)

    def test_an_alert_raised_days_ago_is_refused_as_stale_and_consumes_no_counter(
            self) -> None:
        old = self.w.clock.seconds() - 4 * 86400
        self.w.deliver(self.w.mo("+447700900101",
                                 self.handset_a.alert(make_alert("lost"), old)))
        self.assertEqual(self.w.scalar("SELECT state FROM devices WHERE id = :i",
                                       i=self.dev_a), "provisioned")
        self.assertEqual(self.w.inbound.counts["rejected_stale_alert"], 1)
        self.assertEqual(self.w.scalar("SELECT counter_hwm FROM devices WHERE id = :i",
                                       i=self.dev_a), 0)
        self.assertEqual(self.security_events(), ["stale_alert"])
        future = self.w.clock.seconds() + 3600
        self.w.deliver(self.w.mo("+447700900101",
                                 self.handset_a.alert(make_alert("lost"), future)))
        self.assertEqual(self.w.inbound.counts["rejected_stale_alert"], 2)

    def test_alert_from_an_unregistered_device_is_rejected_without_any_state_change(
            self) -> None:
        self.handset_b.imei = "353918058450939"  # valid IMEI, not in the registry
        frame = self.handset_b.alert(make_alert("sim_changed", imsi="234150000000000"),
                                     self.w.clock.seconds())
        self.w.deliver(self.w.mo("+447700900102", frame))
        self.assertEqual(self.w.inbound.counts["rejected_wrong_device"], 1)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM commands"), 0)

    def test_garbage_payload_is_kept_with_its_rejection_reason(self) -> None:
        self.w.deliver(self.w.mo("+447700900101", b"\x00hello"))
        self.assertEqual(self.w.scalar("SELECT payload FROM messages WHERE kind = 'mo'")
                         .tobytes()[-6:], b"\x00hello")
        self.assertTrue(str(self.w.scalar("SELECT error FROM messages")).startswith(
            "rejected:"))


class ReEnrolmentTests(SynchronousTestCase):
    def test_a_new_device_key_starts_a_new_alert_counter_space(self) -> None:
        w = World.create()
        self.addCleanup(w.engine.dispose)
        device_id, handset = w.enrol(IMEI_A, "+447700900101")
        for _ in range(3):
            w.deliver(w.mo("+447700900101", handset.alert(make_alert("invalid_sim"),
                                                          w.clock.seconds())))
        # The handset is reset and re-enrolled with a fresh key: its counter restarts at 1.
        fresh = new_device_key()
        w.run(set_device_key_txn, device_id, fresh.key_id, fresh.public.raw)
        handset.device_key, handset.alert_counter = fresh, 0
        w.deliver(w.mo("+447700900101", handset.alert(make_alert("invalid_sim"),
                                                      w.clock.seconds())))
        self.assertEqual(w.inbound.counts["alert_invalid_sim"], 4)
        # Storing the same key again keeps the window: a replay is still refused.
        w.run(set_device_key_txn, device_id, fresh.key_id, fresh.public.raw)
        handset.alert_counter = 0
        w.deliver(w.mo("+447700900101", handset.alert(make_alert("invalid_sim"),
                                                      w.clock.seconds())))
        self.assertEqual(w.inbound.counts["rejected_replayed"], 1)
