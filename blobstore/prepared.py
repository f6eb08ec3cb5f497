"""Hot statements prepared once per database session, then run by name.

psycopg2 interpolates parameters on the client, so PostgreSQL parses and
plans every statement it receives.  For the statements that touch the
partitioned ``messages`` table, planning cost more than running:
``pg_stat_statements`` with ``track_planning`` showed 0.6-0.9 ms of planning
per call against 0.1-0.5 ms of execution, 28 % of PostgreSQL's statement
time in a 10k fan-out.  A :class:`Prepared` statement is sent once per
connection as ``PREPARE``; later calls send a short ``EXECUTE``.  Left to
itself PostgreSQL kept planning them on every call (it compares the generic
plan's cost with the custom plans'), so the generic plan is forced
(``plan_cache_mode``): each session plans each statement once, and again
only when a table it reads changes shape or statistics.

A cached plan is kept while the table grows: a generic plan made when a
month's partition was new (and small) kept a sequential scan of it once it
held 12,000 rows (7.7 ms per ten-row update instead of 0.1 ms; autovacuum's
ANALYZE, which would invalidate the plan, comes only every minute).  Every
statement here looks rows up by key, so each runs with sequential and
bitmap scans disabled (``SET LOCAL``, sent in the same round trip as the
transaction's first prepared statement; it lasts to the end of the
transaction, whose other statements are key lookups too): whatever the
statistics say when it is planned, it reads the index.  The transaction's
later statements go without the three ``SET`` statements, which had been
two fifths of the statements PostgreSQL ran in a 10k fan-out (a savepoint,
which could roll them back, makes the next statement send them again).
A plain index scan also marks the dead entries it meets (the inbound queue
deletes every row it applies), which a bitmap scan does not: with a bitmap
scan the claim re-read thousands of dead entries each time (1.1 ms a claim).

The statement is written with named ``:parameters`` and a declared
PostgreSQL type for each; the arguments are cast to those types in the
``EXECUTE``, so lists of NULLs and empty lists need no special care.  Lists
go as one array literal each (:mod:`blobstore.array_literals`), not as
``ARRAY[...]`` expressions of one constant per element.  Which
sessions have which statement is kept in the pooled connection's ``info``,
which SQLAlchemy clears when the connection is invalidated and replaced.  A
``PREPARE`` outlives a rolled-back transaction (it is not transactional).

Behind a pooler in transaction mode (PgBouncer's ``pool_mode =
transaction``), server sessions are shared, and a statement prepared on one
may be missing on the next: set ``database.prepared_statements = false``
(the same SQL then runs as a plain statement).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from blobstore import driver
from blobstore.array_literals import encoder_for
from blobstore.driver import Rows

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_INFO_KEY = "mepl_prepared"
_GUARDED_KEY = "mepl_guarded"
PLAN_GUARDS = ("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
               "SET LOCAL plan_cache_mode = force_generic_plan; ")
"""Sent before each statement (same round trip): planned once, as index scans."""
STATEMENTS: dict[str, Prepared] = {}
"""Every :class:`Prepared` statement, by its server-side name."""
OPTION = "mepl_prepared_statements"
"""Execution option (on the engine) that turns prepared statements off when False."""


class Prepared:
    """One statement, run as ``EXECUTE name(...)`` on sessions that have it prepared.

    Every instance is listed in :data:`STATEMENTS` by its server-side name
    (the query-plan tests EXPLAIN what an ``EXECUTE`` runs).
    """

    def __init__(self, name: str, sql: str, params: Mapping[str, str]) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"bad statement name {name!r}")
        used = list(dict.fromkeys(_PARAM.findall(sql)))
        if set(used) != set(params):
            raise ValueError(f"{name}: parameters used {sorted(used)} but declared "
                             f"{sorted(params)}")
        order = list(params)
        position = {p: i for i, p in enumerate(order, start=1)}
        self.name = f"mepl_{name}"
        escaped = sql.replace("%", "%%")  # the driver formats every statement (pyformat)
        body = _PARAM.sub(lambda m: f"${position[m.group(1)]}", escaped)
        self.prepare_sql = (f"PREPARE {self.name}({', '.join(params[p] for p in order)}) "
                            f"AS {body}")
        casts = ", ".join(f"CAST(%({p})s AS {params[p]})" for p in order)
        self.bare_execute_sql = f"EXECUTE {self.name}({casts})"
        """The ``EXECUTE`` alone, for a transaction that has the plan guards already."""
        self.execute_sql = PLAN_GUARDS + self.bare_execute_sql
        self.body_sql = _PARAM.sub(
            lambda m: f"CAST(%({m.group(1)})s AS {params[m.group(1)]})", escaped)
        """The statement with its arguments inline (pyformat), without the plan guards."""
        self.plain_sql = PLAN_GUARDS + self.body_sql
        """The plain form, for sessions without prepared statements: same casts."""
        self._params = frozenset(params)
        self._arrays = {p: e for p, e in ((p, encoder_for(t)) for p, t in params.items())
                        if e is not None}
        known = STATEMENTS.setdefault(self.name, self)
        if known.prepare_sql != self.prepare_sql:
            raise ValueError(f"two different statements named {self.name}")

    def __call__(self, conn: Connection, args: Mapping[str, Any]) -> Rows:
        """Run the statement with ``args`` (one value per declared parameter).

        It runs on the driver's cursor (:mod:`blobstore.driver`), in ``conn``'s
        transaction, with SQLAlchemy's error handling.
        """
        if args.keys() != self._params:
            raise TypeError(f"{self.name}: arguments {sorted(args)} but parameters "
                            f"{sorted(self._params)}")
        args = {**args, **{p: encode(args[p]) for p, encode in self._arrays.items()}}
        info = conn.connection.info
        scope = (conn.get_transaction(), conn.get_nested_transaction())
        guarded = scope[0] is not None and info.get(_GUARDED_KEY) == scope
        if not conn.get_execution_options().get(OPTION, True):
            rows = driver.execute(conn, self.body_sql if guarded else self.plain_sql, args)
        else:
            done: set[str] = info.setdefault(_INFO_KEY, set())
            if self.name not in done:
                driver.execute(conn, self.prepare_sql, {})
                done.add(self.name)
            rows = driver.execute(
                conn, self.bare_execute_sql if guarded else self.execute_sql, args)
        if scope[0] is not None:
            # The guards hold to the end of this transaction (or of this savepoint).
            info[_GUARDED_KEY] = scope
        return rows
