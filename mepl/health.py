"""``/healthz`` and ``/readyz`` on the metrics listener (never on the gateway port).

``/healthz`` (liveness): the process answers and its reactor is responsive:
200 while the last lag measured by :class:`~mepl.metrics.ReactorLag` is at most
``metrics.max_lag_s``, else 503.  A blocked reactor does not answer at all,
which a probe's own timeout reports.

``/readyz`` (readiness): 200 only when every check passes, else 503; the
JSON body lists each check and ``failed`` names the ones that did not:

- ``database``: a new connection (not one of the pool's, so a busy pool does
  not look like a dead database) reads the schema revision within
  ``metrics.ready_timeout_s``;
- ``schema``: that revision is the one this code needs (``mepl db upgrade``);
- ``channels``: at least one SMPP bind is up, or an HTTP send channel is
  configured;
- ``dispatcher`` and ``inbound_worker``: both loops are running (not yet
  started, or stopping, is not ready).

Only one database probe runs at a time: requests arriving meanwhile share its
answer, so a flood of probes against a dead database cannot tie up threads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from blobstore.migrate import head_revision
from blobstore.operations import schema_revision_txn
from blobstore.pool import run_transaction
from mepl.metrics import MetricsConfig, MetricsResource, ReactorLag

JSON = Mapping[str, Any]


def probe_engine(engine: Engine, timeout_s: float) -> Engine:
    """An engine on ``engine``'s database that opens a new connection per probe,
    giving up connecting and running after about ``timeout_s``."""
    ms = max(int(timeout_s * 1000), 1)
    return create_engine(engine.url, poolclass=NullPool, connect_args={
        # libpq counts whole seconds, at least 2
        "connect_timeout": max(2, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
        "application_name": "mepl-readyz"})


class HealthChecks:
    """The liveness and readiness verdicts of one MEPL process."""

    def __init__(self, *, reactor: Any, engine: Engine, config: MetricsConfig,
                 lag: ReactorLag, channels: Callable[[], Mapping[str, bool]],
                 http_senders: Callable[[], list[str]],
                 loops: Callable[[], Mapping[str, bool]]) -> None:
        self._reactor = reactor
        self._engine = probe_engine(engine, config.ready_timeout_s)
        self._config = config
        self._lag = lag
        self._channels = channels
        self._http_senders = http_senders
        self._loops = loops
        self._head = head_revision()
        self._probe: list[Deferred[JSON]] | None = None

    def close(self) -> None:
        """Release the probe engine."""
        self._engine.dispose()

    def live(self) -> tuple[bool, JSON]:
        """(alive, body) for ``/healthz``."""
        lag = self._lag.last
        ok = lag <= self._config.max_lag_s
        return ok, {"status": "ok" if ok else "unhealthy",
                    "checks": {"reactor": {"ok": ok, "lag_s": round(lag, 6),
                                           "max_lag_s": self._config.max_lag_s}}}

    def ready(self) -> Deferred[tuple[bool, JSON]]:
        """(ready, body) for ``/readyz``; the database part is bounded in time."""
        return self._database().addCallback(self._verdict)

    def _verdict(self, database: JSON) -> tuple[bool, JSON]:
        checks: dict[str, Any] = {"database": {k: v for k, v in database.items()
                                               if k != "revision"}}
        revision = database.get("revision")
        if database["ok"]:
            checks["schema"] = {"ok": revision == self._head, "revision": revision,
                                "needs": self._head}
            if revision != self._head:
                checks["schema"]["error"] = "run `mepl db upgrade`"
        else:
            checks["schema"] = {"ok": False, "error": "database not reachable"}
        up = sorted(name for name, is_up in self._channels().items() if is_up)
        senders = sorted(self._http_senders())
        checks["channels"] = {"ok": bool(up or senders), "smpp_up": up,
                              "http_send": senders}
        if not checks["channels"]["ok"]:
            checks["channels"]["error"] = "no SMPP bind up and no HTTP send channel"
        for name, running in self._loops().items():
            checks[name] = {"ok": running} if running else {"ok": False,
                                                            "error": "not running"}
        failed = [name for name, check in checks.items() if not check["ok"]]
        return not failed, {"status": "not ready" if failed else "ready",
                            "failed": failed, "checks": checks}

    def _database(self) -> Deferred[JSON]:
        waiter: Deferred[JSON] = Deferred()
        if self._probe is not None:
            self._probe.append(waiter)
            return waiter
        self._probe = [waiter]
        timeout = self._config.ready_timeout_s
        started = self._reactor.seconds()
        d: Deferred[str | None] = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), run_transaction, self._engine,
            "readiness", schema_revision_txn, (), {}, attempts=1, backoff_s=0.0)
        d.addTimeout(timeout, self._reactor)

        def answered(result: str | Failure | None) -> None:
            elapsed = round(self._reactor.seconds() - started, 6)
            body: dict[str, Any]
            if isinstance(result, Failure):
                error = (f"no answer within {timeout} s" if result.check(CancelledError)
                         else _first_line(result.value or Exception()))
                body = {"ok": False, "error": error, "elapsed_s": elapsed}
            else:
                body = {"ok": True, "revision": result, "elapsed_s": elapsed}
            waiters, self._probe = self._probe or [], None
            for w in waiters:
                w.callback(body)

        d.addBoth(answered)
        return waiter


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _json(request: Any, ok: bool, body: JSON) -> bytes:
    request.setResponseCode(200 if ok else 503)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


class LiveResource(Resource):
    """``GET /healthz``."""

    isLeaf = True  # noqa: N815 - Twisted API

    def __init__(self, checks: HealthChecks) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._checks = checks

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted API
        """200 with the reactor's lag, or 503 when it is too laggy."""
        return _json(request, *self._checks.live())


class ReadyResource(Resource):
    """``GET /readyz``."""

    isLeaf = True  # noqa: N815 - Twisted API

    def __init__(self, checks: HealthChecks) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._checks = checks

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - Twisted API
        """200 when ready, else 503; the body names the failed checks."""
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(verdict: tuple[bool, JSON]) -> None:
            if not gone:
                request.write(_json(request, *verdict))
                request.finish()

        def broken(failure: Failure) -> None:
            answer((False, {"status": "not ready", "failed": ["checks"],
                            "checks": {"checks": {"ok": False,
                                                  "error": failure.getErrorMessage()}}}))

        self._checks.ready().addCallbacks(answer, broken)
        return NOT_DONE_YET


def operations_root(registry: Any, checks: HealthChecks | None) -> Resource:
    """The metrics listener's resources: ``/metrics``, and ``/healthz`` and
    ``/readyz`` when ``checks`` is given."""
    root: Any = Resource()  # type: ignore[no-untyped-call]
    root.putChild(b"metrics", MetricsResource(registry))
    if checks is not None:
        root.putChild(b"healthz", LiveResource(checks))
        root.putChild(b"readyz", ReadyResource(checks))
    return cast(Resource, root)
