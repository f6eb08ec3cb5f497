"""Several MEPL processes share one database: what must hold when they race."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine

from blobstore import importer
from blobstore.commands import NewCommand, insert_group_commands_txn
from blobstore.devices import add_device_txn, count_devices_txn
from blobstore.groups import add_members_txn, create_group_txn
from blobstore.identity import luhn_check_digit
from blobstore.importer import ImportRow, import_csv, import_rows_txn
from blobstore.migrate import head_revision, schema_status
from mepl.runtime.outbound_txn import claim_commands_txn
from tests.support.pg import create_database


def _imei(n: int) -> str:
    body = f"35{n:012d}"
    return body + luhn_check_digit(body)


def _race(workers: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def run(index: int) -> None:
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_concurrent_dispatchers_never_claim_the_same_command(engine: Engine) -> None:
    with engine.begin() as conn:
        ids = [add_device_txn(conn, _imei(n)).id for n in range(50)]
        create_group_txn(conn, "all")
        add_members_txn(conn, "all", ids)
        for _ in range(4):
            insert_group_commands_txn(conn, "all", NewCommand(
                "status", "ops", datetime.now(UTC) + timedelta(hours=1)))
    claimed: list[list[int]] = [[] for _ in range(4)]

    def dispatcher(index: int) -> None:
        while True:
            with engine.begin() as conn:
                batch = claim_commands_txn(conn, worker=f"w{index}", limit=7,
                                           now=datetime.now(UTC) + timedelta(seconds=1))
            if not batch:
                return
            claimed[index].extend(c.id for c in batch)

    _race(4, dispatcher)
    every = [cid for ids_ in claimed for cid in ids_]
    assert len(every) == 200
    assert len(set(every)) == 200


def test_concurrent_upgrades_from_several_processes_apply_the_schema_once() -> None:
    url = create_database("race")
    script = ("import sys; from sqlalchemy import create_engine; "
              "from blobstore.migrate import upgrade; upgrade(create_engine(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE)
             for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else b"") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    engine = create_engine(url)
    try:
        assert schema_status(engine) == (head_revision(), head_revision())
    finally:
        engine.dispose()


def test_import_racing_another_registration_reports_it_and_keeps_the_rest(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Make the "already registered" pre-check miss, as when another process
    # commits the same IMEI between the check and the insert.
    monkeypatch.setattr(importer, "_ALREADY",
                        "SELECT imei FROM mepl_import_stage WHERE false")
    with engine.begin() as conn:
        add_device_txn(conn, _imei(2))
    rows = [ImportRow(n + 2, _imei(n), None, None, "g") for n in range(4)]
    with engine.begin() as conn:
        errors = import_rows_txn(conn, rows).errors
        assert count_devices_txn(conn) == 4
    assert [str(e) for e in errors] == [f"line 4: IMEI {_imei(2)} is already registered"]


def test_parallel_imports_of_overlapping_files_register_each_imei_once(engine: Engine) -> None:
    orders = [range(0, 300), range(399, 99, -1), range(200, 500)]  # one file backwards
    files = ["imei,group\n" + "".join(f"{_imei(n)},shared\n" for n in order)
             for order in orders]
    reports: list[importer.ImportReport] = [importer.ImportReport() for _ in files]

    def run(index: int) -> None:
        reports[index] = import_csv(engine, io.StringIO(files[index]), None, batch_size=50)

    _race(3, run)
    with engine.begin() as conn:
        assert count_devices_txn(conn) == 500
    assert sum(r.imported for r in reports) == 500
    assert sum(len(r.errors) for r in reports) == 400
    assert all("already registered" in e.message for r in reports for e in r.errors)
