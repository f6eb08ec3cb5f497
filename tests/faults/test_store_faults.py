"""Scenarios 4 and 5: the store goes away under load.

4. **PostgreSQL restarted**: a cluster of its own (``blobstore.embedded``),
   stopped (alternately ``-m fast`` and ``-m immediate``, a crash) and
   started again while a ``mepl run`` process sends a fan-out.  The pool's
   retries, the dispatcher's next round and the LISTEN connection's
   reconnect must cope: nothing committed is lost, nothing is done twice.
5. **Gateways retrying callbacks after 503s**: the handsets' replies come
   back as signed HTTP callbacks to the process's real listener, through a
   gateway stand-in that retries every callback until it is answered 200.
   For a while the database refuses every connection to MEPL's database
   (``ALLOW_CONNECTIONS false`` and its sessions terminated): the listener
   answers 503 and nothing it acknowledged may be lost or stored twice.

Expected final state in each: every command ``done``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import treq
from sqlalchemy import create_engine
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from blobstore import embedded
from blobstore.migrate import upgrade
from signing.transport import armour
from sms_gateway.http.auth import sign_body
from tests.faults.invariants import Expect
from tests.faults.rig import HTTP_SECRET, SERVER, FaultRig, Scale
from tests.support.pg import admin_execute

DOWN_S = 1.0


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class OwnCluster:
    """A PostgreSQL cluster for one test, which the test may stop and start."""

    def __init__(self, case: TestCase) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="mepl-faults-pg-"))
        case.addCleanup(shutil.rmtree, self.state, True)
        self.server = embedded.start_embedded(self.state)
        case.addCleanup(self.server.stop)
        self.url = self.server.url()
        engine = create_engine(self.url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()

    def pg_ctl(self, *args: str) -> Deferred[None]:
        """Run pg_ctl on the cluster (as the server's user) off the reactor thread."""
        # The test's own cluster: embedded's private runner, as `mepl` itself runs pg_ctl.
        binary = str(embedded._bin_dir() / "pg_ctl")
        as_user = self.server._cluster._run_as()
        return deferToThread(embedded._run,
                             [binary, *args, "-D", str(self.server.pgdata)],
                             what=f"pg_ctl {args[0]}", timeout=60, as_user=as_user,
                             cwd=self.state)

    @inlineCallbacks
    def restart(self, mode: str, down_s: float) -> Any:
        """Stop the server (``mode``: fast or immediate), wait ``down_s``, start it again."""
        yield self.pg_ctl("stop", "-m", mode, "-w")
        yield sleep(down_s)
        options = (f"-c listen_addresses= -p {embedded.PORT} -k {self.server.socket_dir} "
                   "-c unix_socket_permissions=0700")
        yield self.pg_ctl("start", "-w", "-l", str(self.server.pgdata / "log"), "-o", options)


class GatewayStandIn:
    """An HTTP gateway: posts each reply as a signed JSON callback, retrying until 200."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/gateways/hosted/inbound"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.sent = 0
        self.refused = 0  # 503 answers
        self.errors = 0  # other failures (connection refused, say)
        self.acknowledged: set[str] = set()

    @inlineCallbacks
    def deliver(self, sender: str, frame: bytes) -> Any:
        self.sent += 1
        callback_id = f"cb-{self.sent}"
        body = json.dumps({"id": callback_id, "from": sender, "to": SERVER,
                           "text": armour(frame)}).encode()
        for _ in range(600):
            headers = {"content-type": ["application/json"],
                       "x-mepl-signature": [sign_body(HTTP_SECRET, body, int(time.time()))]}
            try:
                response = yield treq.post(self.url, data=body, headers=headers,
                                           pool=self.pool)
                yield treq.content(response)
            except Exception:
                self.errors += 1
            else:
                if response.code == 200:
                    self.acknowledged.add(callback_id)
                    return 200
                self.refused += response.code == 503
            yield sleep(0.2)
        raise AssertionError(f"callback {callback_id} never acknowledged")


class StoreFaultTests(TestCase):
    timeout = 300
    scale = Scale("quick", devices=20, faults=2)

    @inlineCallbacks
    def test_postgresql_restarted_under_load_loses_and_doubles_nothing(self) -> Any:
        cluster = OwnCluster(self)
        rig = FaultRig(self, self.scale.devices, database_url=cluster.url)
        yield rig.start()
        rig.spawn()
        try:
            yield rig.bound(1)
            for n in range(self.scale.faults):
                rig.fan_out()
                yield sleep(0.3)
                yield cluster.restart(("fast", "immediate")[n % 2], DOWN_S)
            yield rig.settle()
        finally:
            yield rig.stop()
        rig.check("PostgreSQL restarted", self.scale, {"restarts": self.scale.faults})

    @inlineCallbacks
    def test_callbacks_retried_after_503s_are_stored_and_applied_once(self) -> Any:
        rig = FaultRig(self, self.scale.devices, http=True)
        yield rig.start()
        assert rig.http_port is not None
        gateway = GatewayStandIn(rig.http_port)
        rig.fleet.uplink = gateway.deliver
        database = rig.url.split("?", 1)[0].rsplit("/", 1)[1]
        rig.spawn()
        try:
            yield rig.bound(1)
            for _ in range(self.scale.faults):
                rig.fan_out()
                yield rig.wait_for(lambda s=gateway.sent: gateway.sent > s,
                                   "replies coming back", step=0.02)
                admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                admin_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{database}'")
                yield sleep(DOWN_S)
                admin_execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            yield rig.settle()
            yield rig.wait_for(lambda: gateway.sent == len(gateway.acknowledged),
                               "every callback acknowledged")
        finally:
            yield rig.stop()
        self.assertGreater(gateway.refused, 0, "the listener must have answered 503")
        rig.check("callbacks retried after 503", self.scale, {
            "store outages": self.scale.faults, "callbacks answered 503": gateway.refused,
            "callbacks": gateway.sent},
            Expect(callbacks_acknowledged=frozenset(gateway.acknowledged)))


@pytest.mark.faults
class FullStoreFaultTests(StoreFaultTests):
    timeout = 900
    scale = Scale("full", devices=200, faults=4)
