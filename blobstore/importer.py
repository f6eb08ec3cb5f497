"""Bulk device import from CSV (``imei,imsi,phone,group,public_key``), for ``mepl devices import``.

Rows are checked in Python first (IMEI check digit, IMSI, phone number,
group name, duplicates within the file); a bad row is reported as
``line N: <what is wrong>`` and skipped.  Good rows go to the database in
batches, one transaction per batch: COPY into a temporary table, then one
statement inserts the devices (``ON CONFLICT DO NOTHING``, so an IMEI already
registered, even by a concurrent import, becomes a bad row) and their group
memberships.  A row with a ``public_key`` (the handset's Ed25519 key, 64 hex
digits) is enrolled in the same statement: key recorded, device
``provisioned``, pinned to the server key it was provisioned with.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from blobstore.copy import NULL, bytea_cell, copy_from_text, text_cell
from blobstore.groups import check_group_name
from blobstore.identity import IdentityError, parse_imei, parse_imsi, parse_msisdn
from blobstore.pool import run_transaction

COLUMNS = ("imei", "imsi", "phone", "group", "public_key")
DEFAULT_BATCH_SIZE = 10_000


class ImportFormatError(ValueError):
    """The file as a whole cannot be imported (bad header); nothing was written."""


@dataclass(frozen=True)
class ImportRow:
    """A checked, canonical row."""

    line: int
    imei: str
    imsi: str | None
    msisdn: str | None
    group: str | None
    public_key: bytes | None = None


@dataclass(frozen=True)
class Enrolling:
    """How rows with a public key are enrolled: the device key id of a public key,
    and the server key the handsets were provisioned with (None: not recorded)."""

    key_id_of: Callable[[bytes], int]
    server_key: int | None
    key_defect: Callable[[bytes], str | None] = lambda _raw: None
    """Why a public key can never verify (a bad row), or None."""


@dataclass(frozen=True)
class RowError:
    """A row that was not imported, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportReport:
    """What an import did."""

    rows: int = 0
    imported: int = 0
    enrolled: int = 0
    errors: list[RowError] = field(default_factory=list)


def parse_csv(stream: Iterable[str], default_region: str | None) -> Iterator[ImportRow | RowError]:
    """Read and check CSV rows; yield each as an :class:`ImportRow` or a :class:`RowError`.

    The header must name ``imei`` and may name ``imsi``, ``phone``, ``group``
    in any order.  Blank lines are skipped.  A repeated IMEI is an error on
    every occurrence after the first.  A line the csv module cannot read (a
    field over its size limit) is an error that ends the reading.
    """
    reader = csv.reader(stream)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFormatError(
            "the file is empty; expected a header imei,imsi,phone,group,public_key"
        ) from None
    except csv.Error as exc:
        raise ImportFormatError(f"line 1: not readable as CSV ({exc})") from None
    unknown = [h for h in header if h not in COLUMNS]
    if unknown or "imei" not in header or len(set(header)) != len(header):
        raise ImportFormatError(
            f"line 1: header must be imei,imsi,phone,group,public_key (any order, imei "
            f"required); "
            f"got {','.join(header)}"
        )
    position = {name: header.index(name) for name in header}
    seen: dict[str, int] = {}
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over csv.field_size_limit(), say
            yield RowError(reader.line_num, f"not readable as CSV ({exc}); the rest of the "
                           "file was not read")
            return
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            yield RowError(line, f"expected {len(header)} fields, got {len(fields)}")
            continue
        try:
            row = _check_row(line, fields, position, default_region)
        except (IdentityError, ValueError) as exc:
            yield RowError(line, str(exc))
            continue
        first = seen.setdefault(row.imei, line)
        if first != line:
            yield RowError(line, f"duplicate IMEI {row.imei}, already on line {first}")
            continue
        yield row


def _check_row(line: int, fields: list[str], position: dict[str, int],
               default_region: str | None) -> ImportRow:
    def get(name: str) -> str:
        index = position.get(name)
        return fields[index].strip() if index is not None else ""

    imsi, phone, group, key = get("imsi"), get("phone"), get("group"), get("public_key")
    return ImportRow(
        line=line,
        imei=parse_imei(get("imei")),
        imsi=parse_imsi(imsi) if imsi else None,
        msisdn=parse_msisdn(phone, default_region) if phone else None,
        group=check_group_name(group) if group else None,
        public_key=_public_key(key) if key else None,
    )


def _public_key(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError("public_key: not hexadecimal") from None
    if len(raw) != 32:
        raise ValueError(f"public_key: an Ed25519 public key has 32 octets, got {len(raw)}")
    return raw


_STAGE = """
CREATE TEMPORARY TABLE mepl_import_stage (
    line integer NOT NULL, imei char(15) NOT NULL, imsi text, msisdn text, grp text,
    key_id integer, public_key bytea
) ON COMMIT DROP
"""

_INSERT = """
WITH ins AS (
    INSERT INTO devices (imei, imsi, msisdn, key_id, public_key, state)
    SELECT imei, imsi, msisdn, key_id, public_key,
           CASE WHEN public_key IS NULL THEN 'unprovisioned' ELSE 'provisioned' END
    FROM mepl_import_stage ORDER BY imei
    {on_conflict}
    RETURNING id, imei, public_key IS NOT NULL AS enrolled
), members AS (
    INSERT INTO group_members (group_id, device_id)
    SELECT g.id, ins.id FROM ins
    JOIN mepl_import_stage s ON s.imei = ins.imei
    JOIN groups g ON g.name = s.grp
), pins AS (
    INSERT INTO device_server_keys (device_id, key_id)
    SELECT ins.id, CAST(:server_key AS integer) FROM ins
    WHERE ins.enrolled AND CAST(:server_key AS integer) IS NOT NULL
)
SELECT imei, enrolled FROM ins
"""

_ALREADY = """
DELETE FROM mepl_import_stage s USING devices d WHERE d.imei = s.imei RETURNING s.imei
"""


def _copy_text(rows: Sequence[ImportRow], enrolling: Enrolling | None) -> str:
    cell = text_cell

    def key_cells(row: ImportRow) -> str:
        if row.public_key is None or enrolling is None:
            return f"{NULL}\t{NULL}"
        return f"{enrolling.key_id_of(row.public_key)}\t{bytea_cell(row.public_key)}"

    return "".join(
        f"{r.line}\t{r.imei}\t{cell(r.imsi)}\t{cell(r.msisdn)}\t{cell(r.group)}\t"
        f"{key_cells(r)}\n" for r in rows
    )


def import_rows_txn(conn: Connection, rows: Sequence[ImportRow],
                    enrolling: Enrolling | None = None) -> ImportedBatch:
    """Insert checked rows (enrolling those with a key, when ``enrolling`` says how)."""
    if not rows:
        return ImportedBatch([], 0)
    if enrolling is None and any(r.public_key is not None for r in rows):
        raise ValueError("rows carry public keys but nothing says how to enrol them")
    conn.execute(text(_STAGE))
    copy_from_text(conn, "COPY mepl_import_stage (line, imei, imsi, msisdn, grp, key_id, "
                   "public_key) FROM STDIN", _copy_text(rows, enrolling))
    conn.execute(text("ANALYZE mepl_import_stage"))
    # Sorted, so concurrent batches creating the same groups cannot deadlock.
    conn.execute(text(
        "INSERT INTO groups (name) SELECT DISTINCT grp FROM mepl_import_stage "
        "WHERE grp IS NOT NULL ORDER BY grp ON CONFLICT (name) DO NOTHING"
    ))
    # Rows go in IMEI order, so concurrent imports lock index entries in the
    # same order and cannot deadlock on each other.
    # Known IMEIs are taken out first so the insert can skip ON CONFLICT's
    # speculative insertion; a concurrent import registering one of the
    # rest meanwhile sends this batch down the ON CONFLICT path instead.
    registered = {r[0] for r in conn.execute(text(_ALREADY))}
    pin = {"server_key": enrolling.server_key if enrolling is not None else None}
    try:
        with conn.begin_nested():
            result = conn.execute(text(_INSERT.format(on_conflict="")), pin).all()
    except IntegrityError:
        result = conn.execute(
            text(_INSERT.format(on_conflict="ON CONFLICT (imei) DO NOTHING")), pin).all()
    inserted = {r[0] for r in result}
    return ImportedBatch([RowError(r.line, f"IMEI {r.imei} is already registered")
                          for r in rows if r.imei in registered or r.imei not in inserted],
                         sum(1 for r in result if r[1]))


@dataclass(frozen=True)
class ImportedBatch:
    """What one batch did: the rows refused (IMEI already registered), how many enrolled."""

    errors: list[RowError]
    enrolled: int


def import_csv(engine: Engine, stream: TextIO, default_region: str | None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, workers: int = 2,
               on_batch: Callable[[ImportReport], None] | None = None,
               enrolling: Enrolling | None = None) -> ImportReport:
    """Import a CSV file: check every row, write good ones one transaction per batch.

    Rows with a ``public_key`` column are enrolled as ``enrolling`` says
    (a bad row if it is None).  Rows are checked on this thread while up to ``workers`` batches are
    written on their own connections (each retried on deadlock, serialization
    failure or lost connection; then ``StoreUnavailableError``).  Raises :class:`ImportFormatError`
    for a bad header (nothing written).  A database failure in a batch
    propagates once the batches already started have finished; batches
    committed before stay committed, and the last report passed to
    ``on_batch`` says how far the import got.
    """
    report = ImportReport()
    batch: list[ImportRow] = []
    running: deque[tuple[int, Future[ImportedBatch]]] = deque()

    def write(rows: list[ImportRow]) -> ImportedBatch:
        return run_transaction(engine, "import batch", import_rows_txn, (rows, enrolling), {},
                               attempts=3, backoff_s=0.05)

    def collect_oldest() -> None:
        size, future = running.popleft()
        done = future.result()
        report.errors.extend(done.errors)
        report.imported += size - len(done.errors)
        report.enrolled += done.enrolled
        if on_batch is not None:
            on_batch(report)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="import") as pool:
        try:
            for item in parse_csv(stream, default_region):
                report.rows += 1
                if isinstance(item, RowError):
                    report.errors.append(item)
                    continue
                if item.public_key is not None and enrolling is None:
                    report.errors.append(RowError(
                        item.line, "public_key given but no key store here to enrol with"))
                    continue
                if item.public_key is not None and enrolling is not None and (
                        defect := enrolling.key_defect(item.public_key)) is not None:
                    report.errors.append(RowError(
                        item.line, f"public_key: not a usable device key: {defect}"))
                    continue
                batch.append(item)
                if len(batch) >= batch_size:
                    if len(running) >= max(1, workers):
                        collect_oldest()
                    running.append((len(batch), pool.submit(write, batch)))
                    batch = []
            if batch:
                running.append((len(batch), pool.submit(write, batch)))
            while running:
                collect_oldest()
        finally:
            for _, future in running:
                future.cancel()
    report.errors.sort(key=lambda e: e.line)
    return report
