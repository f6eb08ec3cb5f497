"""Server key rotation without cutting off the fleet.

The signer seals each command with the key its device has accepted (and
loads a key the store gained while it runs); ``rotate_server_key`` pins
devices to the old key and queues ``rotate_key`` for every enrolled device;
the dispatcher seals those under each device's *accepted* key, the handsets
accept them, and each verified reply moves its device to the new key.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from blobstore.commands import PRIORITY_SECURITY, NewCommand, insert_command_txn
from blobstore.devices import add_device_txn, set_device_key_txn
from blobstore.server_keys import key_counts_txn, pin_device_txn
from mepl.app.keys import rotate_server_key
from mepl.inbound import InboundReceiver
from mepl.outbound import Dispatcher
from mepl.runtime.inbound_worker import InboundWorker
from mepl.runtime.outbound_txn import ClaimedCommand
from mepl.settings import DispatchConfig
from mepl.signer import ServerKeyUnavailable, ServerSigner
from signing.errors import FrameRejected, Reason
from signing.frames import open_command
from signing.handset import Handset
from signing.keystore import ServerKeyStore
from sms_gateway.channel import OutboundMessage, SubmitResult
from tests.mepl.helpers import SERVER_NUMBER, Inbound, World, new_device_key

PASSPHRASE = "rotation passphrase"
IMEIS = ("490154203237518", "356938035643809", "353918058450939", "352099001761481")


def key_of(frame: bytes) -> int:
    """The server key id a command frame is sealed under (octets 1-2)."""
    return int.from_bytes(frame[1:3], "big")


def make_store(case: SynchronousTestCase) -> ServerKeyStore:
    """A fresh key store (key 1, encrypted) in a temporary directory removed after ``case``."""
    directory = Path(tempfile.mkdtemp(prefix="mepl-rotation-"))
    case.addCleanup(shutil.rmtree, directory, True)
    store = ServerKeyStore(directory / "keys")
    store.init(now=datetime.now(UTC), passphrase=PASSPHRASE.encode(),
               trusted_numbers=(SERVER_NUMBER,))
    return store


def claimed(command_id: int, key_id: int, counter: int = 1) -> ClaimedCommand:
    return ClaimedCommand(command_id, 1, IMEIS[0], "+447700900101", "lock_status", {},
                          datetime.now(UTC) + timedelta(hours=1), key_id, counter, None)


class SignerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.store = make_store(self)
        self.signer = ServerSigner.load(self.store.directory,
                                        {"MEPL_KEY_PASSPHRASE": PASSPHRASE})

    def opened_key(self, frame: bytes) -> int:
        index = self.store.load()
        opened = open_command(frame, keys={k.key_id: k for k in index.keys},
                              server_id=index.server_id, imei=IMEIS[0])
        return opened.key_id

    def test_seals_with_the_key_id_of_the_claimed_command(self) -> None:
        self.store.rotate(now=datetime.now(UTC), passphrase=PASSPHRASE.encode())
        self.assertEqual(self.opened_key(self.signer.seal(claimed(1, 1))), 1)
        self.assertEqual(self.opened_key(self.signer.seal(claimed(2, 2))), 2)

    def test_a_key_rotated_into_the_store_while_running_is_loaded_with_the_start_passphrase(
            self) -> None:
        self.assertEqual(self.signer.key_id, 1)
        self.assertEqual(self.opened_key(self.signer.seal(claimed(1, 1))), 1)
        # `mepl keys rotate` in another process, while this signer runs.
        self.store.rotate(now=datetime.now(UTC), passphrase=PASSPHRASE.encode())
        frame = self.signer.seal(claimed(2, 2))
        index = self.store.load()
        with self.assertRaises(FrameRejected) as caught:  # not sealed under key 1 ...
            open_command(frame, keys={1: index.key(1)}, server_id=index.server_id,
                         imei=IMEIS[0])
        self.assertEqual(caught.exception.reason, Reason.UNKNOWN_KEY)
        self.assertEqual(self.opened_key(frame), 2)  # ... but under key 2
        # The default key for devices never pinned follows the store too.
        self.assertEqual(self.signer.key_id, 2)

    def test_an_unknown_key_id_fails_that_command_only(self) -> None:
        with self.assertRaises(ValueError) as caught:
            self.signer.seal(claimed(1, 7))
        self.assertIsInstance(caught.exception, ServerKeyUnavailable)
        self.assertIn("server key 7", str(caught.exception))
        self.assertEqual(self.opened_key(self.signer.seal(claimed(2, 1))), 1)


class AlwaysSent:
    """A submitter that accepts everything and remembers it."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def submit(self, message: OutboundMessage) -> Deferred[SubmitResult]:
        self.sent.append(message)
        return succeed(SubmitResult("l1", (f"m{len(self.sent)}",)))

    def take(self) -> dict[str, list[bytes]]:
        """Frames submitted since the last call, by destination number, in order."""
        out: dict[str, list[bytes]] = {}
        for message in self.sent:
            out.setdefault(message.destination, []).append(message.payload)
        self.sent.clear()
        return out


@dataclass
class Phone:
    device_id: int
    msisdn: str
    handset: Handset


class RotationEndToEndTests(SynchronousTestCase):
    """Several reference handsets on key 1, a rotation, the dispatcher, the replies."""

    def setUp(self) -> None:
        base = World.create()
        self.addCleanup(base.engine.dispose)
        self.store = make_store(self)
        self.signer = ServerSigner.load(self.store.directory,
                                        {"MEPL_KEY_PASSPHRASE": PASSPHRASE})
        config = DispatchConfig(server_number=SERVER_NUMBER)
        worker = InboundWorker(runner=base.pool, clock=base.clock,
                               server_id=self.signer.server_id, config=config, worker="w")
        self.w = World(base.engine, base.pool, base.clock, self.signer,
                       Inbound(InboundReceiver(runner=base.pool, clock=base.clock,
                                               wake=lambda: None, max_rows=1), worker))
        self.submitter = AlwaysSent()
        self.config = config
        self.dispatcher = Dispatcher(
            runner=self.w.pool, clock=self.w.clock, submitter=self.submitter,
            seal=self.signer.seal, key_id=lambda: self.signer.key_id, config=config,
            worker="d")
        self.phones = [self.enrol(i, pinned=i != 2) for i in range(len(IMEIS))]

    def enrol(self, index: int, *, pinned: bool) -> Phone:
        """Provision a handset from the store's bundle and register it; ``pinned=False``
        is a device enrolled before enrolment recorded the server key."""
        imei, msisdn = IMEIS[index], f"+44770090010{index}"
        device_key = new_device_key()
        handset = Handset.from_bundle(self.store.bundle(imei), device_key)
        active = self.store.load().active_key_id

        def txn(conn: Any) -> int:
            record = add_device_txn(conn, imei, msisdn=msisdn, state="provisioned")
            set_device_key_txn(conn, record.id, device_key.key_id, device_key.public.raw)
            if pinned:
                pin_device_txn(conn, record.id, active, replace=True)
            return record.id

        return Phone(self.w.run(txn), msisdn, handset)

    def rotate(self) -> Any:
        return rotate_server_key(self.w.engine, self.store, passphrase=PASSPHRASE.encode(),
                                 now=self.w.now, actor="tester")

    def dispatch_all(self) -> dict[str, list[bytes]]:
        """One dispatcher round: every frame submitted, by number."""
        self.successResultOf(self.dispatcher.run_once())
        return self.submitter.take()

    def dispatch(self) -> dict[str, bytes]:
        """One dispatcher round that sends at most one frame per number."""
        frames = self.dispatch_all()
        self.assertEqual({len(f) for f in frames.values()} - {1}, set())
        return {number: f[0] for number, f in frames.items()}

    def answer(self, phone: Phone, frame: bytes) -> Any:
        """The handset verifies and executes the frame; its reply reaches the server."""
        outcome = phone.handset.receive(frame, SERVER_NUMBER, self.w.clock.seconds())
        self.w.deliver(self.w.mo(phone.msisdn, outcome.reply_frame))
        return outcome

    def accepted(self) -> dict[int, int]:
        with self.w.engine.connect() as conn:
            rows = conn.execute(text("SELECT device_id, key_id FROM device_server_keys"))
            return {int(d): int(k) for d, k in rows}

    def state(self, command_id: int) -> str:
        return str(self.w.scalar("SELECT state FROM commands WHERE id = :i", i=command_id))

    def test_rotation_reaches_every_handset_under_its_accepted_key_then_moves_it(
            self) -> None:
        a, b, legacy, offline = self.phones
        before = self.w.queue(a.device_id, "lock_status")  # queued before the rotation
        result = self.rotate()
        self.assertEqual((result.key_id, result.previous_key_id), (2, 1))
        self.assertEqual(result.queued, 4)
        self.assertEqual(result.pinned, 1)  # the device enrolled without a server key
        self.assertEqual(self.accepted(), {p.device_id: 1 for p in self.phones})
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM commands WHERE opcode = 'rotate_key' AND priority = :p "
            "AND requested_by = 'keys rotate (tester)'", p=PRIORITY_SECURITY), 4)

        sent = self.dispatch_all()
        self.assertEqual(self.signer.key_id, 2)  # the dispatcher's default follows the store
        self.assertEqual(sorted(len(f) for f in sent.values()), [1, 1, 1, 2])
        self.assertEqual({key_of(f) for frames in sent.values() for f in frames}, {1})
        # The command queued before the rotation is sealed after it, under key 1 too.
        self.assertEqual(self.w.scalar("SELECT key_id FROM commands WHERE id = :i", i=before),
                         1)
        for phone in (a, b, legacy):  # the offline handset never gets its frame
            outcome = self.answer(phone, sent[phone.msisdn][0])
            self.assertEqual(outcome.command.name, "rotate_key")
            self.assertEqual(outcome.command.args["next_key_id"], 2)
            self.assertIn(2, phone.handset.trusted_keys)
        self.assertEqual(self.answer(a, sent[a.msisdn][1]).command.name, "lock_status")
        self.assertEqual(self.state(before), "done")

        moved = {a.device_id: 2, b.device_id: 2, legacy.device_id: 2, offline.device_id: 1}
        self.assertEqual(self.accepted(), moved)
        self.assertEqual(self.w.run(key_counts_txn), {2: 3, 1: 1})

        later = {p.msisdn: self.w.queue(p.device_id, "lock_status") for p in self.phones}
        frames = self.dispatch()
        for phone in (a, b, legacy):
            self.assertEqual(key_of(frames[phone.msisdn]), 2)
            self.answer(phone, frames[phone.msisdn])
            self.assertEqual(self.state(later[phone.msisdn]), "done")
            self.assertNotIn(1, phone.handset.trusted_keys)  # the old key is retired
        self.assertEqual(key_of(frames[offline.msisdn]), 1)
        stale_lock = frames[offline.msisdn]

        # The offline handset comes back: housekeeping resends its unanswered frames
        # with the same bytes (the rotate_key first), still under key 1.
        rotate_id = int(self.w.scalar(
            "SELECT id FROM commands WHERE opcode = 'rotate_key' AND device_id = :d",
            d=offline.device_id))
        rotate_frame = bytes(self.w.scalar("SELECT frame FROM commands WHERE id = :i",
                                           i=rotate_id))
        self.w.clock.advance(self.config.resend_after_s + 60)
        resent = self.dispatch_all()
        self.assertEqual(resent, {offline.msisdn: [rotate_frame, stale_lock]})
        self.assertEqual(key_of(rotate_frame), 1)
        self.answer(offline, rotate_frame)
        self.assertEqual(self.state(rotate_id), "done")
        self.answer(offline, stale_lock)
        self.assertEqual(self.accepted()[offline.device_id], 2)
        self.assertEqual(self.w.run(key_counts_txn), {2: 4})

        last = self.w.queue(offline.device_id, "lock_status")
        frames = self.dispatch()
        self.assertEqual(key_of(frames[offline.msisdn]), 2)
        self.answer(offline, frames[offline.msisdn])
        self.assertEqual(self.state(last), "done")
        self.assertEqual(sum(sum(p.handset.rejected.values()) for p in self.phones), 0)

    def test_a_second_rotation_is_sealed_under_each_devices_own_accepted_key(self) -> None:
        a, b, legacy, offline = self.phones
        self.rotate()
        frames = self.dispatch()
        for phone in (a, b, legacy):
            self.answer(phone, frames[phone.msisdn])
        result = self.rotate()
        self.assertEqual((result.key_id, result.previous_key_id, result.pinned), (3, 2, 0))
        rotations = self.dispatch()
        self.assertEqual(key_of(rotations[a.msisdn]), 2)
        # The offline device still has key 1 only: both rotations go under key 1.
        self.assertEqual(key_of(rotations[offline.msisdn]), 1)
        for phone in (a, b, legacy):
            self.assertEqual(self.answer(phone, rotations[phone.msisdn]).command.args[
                "next_key_id"], 3)
        self.assertEqual(self.w.run(key_counts_txn), {3: 3, 1: 1})
        self.w.queue(a.device_id, "lock_status")
        frames = self.dispatch()
        self.assertEqual(key_of(frames[a.msisdn]), 3)
        self.assertEqual(self.answer(a, frames[a.msisdn]).command.name, "lock_status")
        self.assertEqual(set(a.handset.trusted_keys), {3})

    def test_commands_are_queued_only_for_enrolled_devices_that_are_not_retired(
            self) -> None:
        def txn(conn: Any) -> None:
            add_device_txn(conn, "357805023984942", msisdn="+447700900199")  # no key yet
            conn.execute(text("UPDATE devices SET state = 'retired' WHERE id = :i"),
                         {"i": self.phones[3].device_id})

        self.w.run(txn)
        result = self.rotate()
        self.assertEqual(result.queued, 3)
        self.assertEqual(self.w.scalar(
            "SELECT count(*) FROM audit WHERE action = 'keys.rotate' AND actor = 'tester' "
            "AND (details->>'queued')::int = 3 AND (details->>'key_id')::int = 2"), 1)

    def test_a_dispatcher_that_sees_the_new_key_mid_rotation_keeps_unpinned_devices_on_the_old(
            self) -> None:
        legacy = self.phones[2]  # enrolled without a server key on record
        self.w.queue(legacy.device_id, "lock_status")
        seen: list[dict[str, list[bytes]]] = []

        class DispatchWhileRotating(ServerKeyStore):
            def rotate(inner, *, now: datetime, passphrase: bytes | None) -> Any:  # noqa: N805
                key = super().rotate(now=now, passphrase=passphrase)
                seen.append(self.dispatch_all())  # before the rotate_key commands exist
                return key

        rotate_server_key(self.w.engine, DispatchWhileRotating(self.store.directory),
                          passphrase=PASSPHRASE.encode(), now=self.w.now, actor="tester")
        (frames,) = seen
        self.assertEqual(self.signer.key_id, 2)
        self.assertEqual(key_of(frames[legacy.msisdn][0]), 1)
        self.assertEqual(self.answer(legacy, frames[legacy.msisdn][0]).command.name,
                         "lock_status")

    def test_a_rotation_without_queueing_only_creates_the_key(self) -> None:
        result = rotate_server_key(None, self.store, passphrase=PASSPHRASE.encode(),
                                   now=self.w.now, actor="tester")
        self.assertEqual((result.key_id, result.queued), (2, None))
        self.assertEqual(self.store.load().active_key_id, 2)
        self.assertEqual(self.w.scalar("SELECT count(*) FROM commands"), 0)

    def test_a_command_sealed_for_a_device_never_pinned_uses_the_active_key(self) -> None:
        # Rotation pins the unpinned; a device enrolled later without a pin gets
        # the key active then, which its (newer) bundle contains.
        self.rotate()
        with self.w.engine.begin() as conn:
            record = add_device_txn(conn, "357805023984942", msisdn="+447700900199",
                                    state="provisioned")
            insert_command_txn(conn, record.id, NewCommand(
                opcode="lock_status", requested_by="t",
                not_after=self.w.now + timedelta(hours=1)))
        frames = self.dispatch()
        self.assertEqual(key_of(frames["+447700900199"]), 2)
