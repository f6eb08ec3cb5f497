"""Archiving old message partitions: export, verify, and only then drop.

One partition at a time, in one transaction:

1. take a SHARE lock on the partition (readers go on; nothing can change it);
2. refuse if an ``inbound_queue`` item still points into it;
3. ``COPY`` it as CSV with a header into ``NAME.csv.gz.partial`` (gzip,
   mode 0600), computing its SHA-256 on the way, then fsync and rename to
   ``NAME.csv.gz``;
4. read the file back and count its records: they must equal the
   partition's ``count(*)`` in the same snapshot, or nothing is dropped;
5. write ``NAME.manifest.json`` (bounds, rows, columns, SHA-256, how to
   restore) and record the archive in ``message_partitions``;
6. with ``drop``: delete the partition's gateway keys (``message_keys``)
   and drop the partition, then commit.  If anything fails the transaction
   rolls back and the partition stays as it was.

The CSV holds every column as PostgreSQL prints it (UTC times, bytea as
``\\x`` hex), so ``COPY ... FROM STDIN WITH (FORMAT csv, HEADER true)``
restores it into a table like ``messages`` (docs/operator-guide.md, 7b).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from blobstore.partitions import Partition, PartitionError, month_start

ARCHIVE_LOCK_TIMEOUT = "10s"
MANIFEST_SCHEMA = "mepl-message-archive/1"


@dataclasses.dataclass(frozen=True)
class ArchiveResult:
    """What one partition's archive run wrote and did."""

    name: str
    file: Path
    manifest: Path
    rows: int
    sha256: str
    bytes: int
    dropped: bool


def archivable(partitions: list[Partition], *, before: datetime, now: datetime) -> list[Partition]:
    """The attached range partitions wholly before ``before`` and before ``now``'s month."""
    limit = min(before, month_start(now))
    return [p for p in partitions
            if p.attached and not p.is_default and p.upper is not None and p.upper <= limit]


class _HashingWriter(io.RawIOBase):
    """A binary sink that hashes and counts what passes through to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.target.write(view)
        self.digest.update(view)
        self.size += len(view)
        return len(view)


class _TextToGzip(io.TextIOBase):
    """psycopg2's COPY TO writes text; this encodes it into the gzip stream."""

    def __init__(self, gz: gzip.GzipFile) -> None:
        self.gz = gz

    def write(self, data: str) -> int:
        self.gz.write(data.encode("utf-8"))
        return len(data)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count_records(path: Path) -> tuple[int, list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        return sum(1 for _ in reader), header


def _export(conn: Connection, name: str, directory: Path) -> tuple[Path, str, int]:
    final = directory / f"{name}.csv.gz"
    partial = directory / f"{name}.csv.gz.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw:
        sink = _HashingWriter(raw)
        with gzip.GzipFile(filename=f"{name}.csv", mode="wb", fileobj=sink, mtime=0) as gz:
            cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.copy_expert(
                    f"COPY (SELECT * FROM {name} ORDER BY id) "  # noqa: S608 - catalog name
                    "TO STDOUT WITH (FORMAT csv, HEADER true)", _TextToGzip(gz))
            finally:
                cursor.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, final)
    _fsync_dir(directory)
    return final, sink.digest.hexdigest(), sink.size


def archive_partition_txn(conn: Connection, partition: Partition, directory: Path, *,
                          drop: bool, schema_revision: str | None) -> ArchiveResult:
    """Export one partition to ``directory``, verify it, and with ``drop`` drop it.

    Runs in the caller's transaction; raises :class:`PartitionError` (nothing
    dropped) when the partition is busy or the export does not match.
    """
    name = partition.name
    if partition.is_default or partition.upper is None:
        raise PartitionError("the default partition is never archived")
    conn.execute(text(f"SET LOCAL lock_timeout = '{ARCHIVE_LOCK_TIMEOUT}'"))
    conn.execute(text("SET LOCAL TimeZone = 'UTC'"))
    conn.execute(text("SET LOCAL DateStyle = 'ISO, YMD'"))
    conn.execute(text("SET LOCAL bytea_output = 'hex'"))
    conn.execute(text(f"LOCK TABLE {name} IN SHARE MODE"))
    queued = conn.execute(text(
        f"SELECT count(*) FROM inbound_queue q JOIN {name} m ON m.id = q.message_id"  # noqa: S608
    )).scalar_one()
    if queued:
        raise PartitionError(f"{name}: {queued} inbound item(s) still queued for its messages; "
                             "archive it once the queue has applied them")
    rows = int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())  # noqa: S608
    file, digest, size = _export(conn, name, directory)
    written, header = _count_records(file)
    if written != rows:
        raise PartitionError(f"{name}: the export holds {written} rows, the partition {rows}; "
                             "nothing was dropped")
    manifest = directory / f"{name}.manifest.json"
    exported_at = conn.execute(text("SELECT now()")).scalar_one()
    document = {
        "schema": MANIFEST_SCHEMA, "partition": name,
        "lower": None if partition.lower is None else partition.lower.astimezone(UTC).isoformat(),
        "upper": partition.upper.astimezone(UTC).isoformat(),
        "rows": rows, "columns": header, "file": file.name, "sha256": digest, "bytes": size,
        "format": "csv with header, gzip; times UTC; bytea as \\x hex",
        "exported_at": exported_at.isoformat(), "schema_revision": schema_revision,
        "dropped": drop,
        "restore": (f"CREATE TABLE restored_{name} (LIKE messages); "
                    f"\\copy restored_{name} FROM PROGRAM 'gunzip -c {file.name}' "
                    "WITH (FORMAT csv, HEADER true)"),
    }
    fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(directory)
    conn.execute(text(
        "UPDATE message_partitions SET state = 'archived', archived_at = now(), "
        "archive_file = :file, archive_sha256 = :sha, archive_rows = :rows WHERE name = :name"),
        {"file": str(file), "sha": digest, "rows": rows, "name": name})
    if drop:
        conn.execute(text(
            "DELETE FROM message_keys WHERE created_at < :upper "
            "AND (CAST(:lower AS timestamptz) IS NULL OR created_at >= :lower)"),
            {"upper": partition.upper, "lower": partition.lower})
        conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(text(
            "UPDATE message_partitions SET state = 'dropped', dropped_at = now() "
            "WHERE name = :name"), {"name": name})
    return ArchiveResult(name, file, manifest, rows, digest, size, drop)
