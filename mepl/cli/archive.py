"""``mepl messages archive``: export old monthly message partitions, then drop them.

Each partition wholly before ``--before`` (and before the current month) is
exported as gzip CSV with a JSON manifest (:mod:`blobstore.archive`), the
export is read back and its rows counted against the partition, and only
with ``--drop`` and a matching count is the partition dropped, all in one
transaction per partition.  ``--dry-run`` lists what would be archived.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from blobstore.archive import ArchiveResult, archivable, archive_partition_txn
from blobstore.database import Database
from blobstore.migrate import current_revision
from blobstore.partitions import PartitionError, list_partitions_txn
from mepl.cli.common import GeneralConfig, add_config_options, fail
from mepl.cli.db import database_now, run_with_database, transactions


def month_date(value: str) -> datetime:
    """argparse type for ``--before``: ``YYYY-MM-DD`` (UTC midnight) or ``YYYY-MM``."""
    for fmt in ("%Y-%m-%d", "%Y-%m"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"invalid date {value!r} (YYYY-MM-DD or YYYY-MM)")


def _directory(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.access(path, os.W_OK):
        raise PartitionError(f"{path}: not writable")
    return path


def _archive(args: argparse.Namespace) -> int:
    def body(database: Database, general: GeneralConfig) -> int:
        runner = transactions(database)
        chosen = archivable(runner.run("list message partitions", list_partitions_txn),
                            before=args.before, now=database_now(database))
        if not chosen:
            print(f"no partition ends on or before {args.before:%Y-%m-%d} "
                  "(and before the current month): nothing to archive")
            return 0
        if args.dry_run:
            for p in chosen:
                print(f"would archive {p.name} ({p.range_text()}, "
                      f"~{p.rows_estimate or 0:,} rows)" + (" and drop it" if args.drop else ""))
            return 0
        try:
            directory = _directory(args.to)
        except (OSError, PartitionError) as exc:
            return fail(f"--to: {exc}")
        revision = runner.run("schema revision", current_revision)
        results: list[ArchiveResult] = []
        for p in chosen:
            try:
                result = runner.run(f"archive {p.name}", archive_partition_txn, p, directory,
                                    drop=args.drop, schema_revision=revision)
            except (PartitionError, OSError) as exc:
                _report(results, args.json)
                return fail(str(exc), status=1)
            results.append(result)
            if not args.json:
                print(f"{result.name}: {result.rows:,} rows -> {result.file} "
                      f"({result.bytes:,} bytes, sha256 {result.sha256})"
                      + ("; dropped" if result.dropped else "; kept (no --drop)"))
        _report(results, args.json)
        return 0

    return run_with_database(args, body)


def _report(results: list[ArchiveResult], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"partition": r.name, "file": str(r.file),
                           "manifest": str(r.manifest), "rows": r.rows, "sha256": r.sha256,
                           "bytes": r.bytes, "dropped": r.dropped} for r in results], indent=2))


def add_archive(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``mepl messages archive``."""
    archive = actions.add_parser(
        "archive", help="export old monthly partitions (gzip CSV + manifest); --drop: "
                        "then drop them",
        description="Export every message partition that ends on or before --before (and "
                    "before the current month) to DIR as NAME.csv.gz with NAME.manifest.json "
                    "(range, rows, columns, SHA-256, how to restore), read the export back and "
                    "count its rows, and with --drop drop the partition, in one transaction "
                    "per partition: a partition is dropped only if its export is complete.  "
                    "A partition with inbound items still queued is refused.  Files are "
                    "written mode 0600 (they hold every byte of those messages).")
    archive.add_argument("--before", type=month_date, required=True, metavar="DATE",
                         help="archive partitions ending on or before DATE (YYYY-MM-DD or "
                              "YYYY-MM, UTC)")
    archive.add_argument("--to", type=Path, required=True, metavar="DIR",
                         help="directory for the exports (created 0700 if missing)")
    archive.add_argument("--drop", action="store_true",
                         help="drop each partition once its export is verified")
    archive.add_argument("--dry-run", action="store_true",
                         help="only list the partitions that would be archived")
    archive.add_argument("--json", action="store_true", help="print JSON")
    add_config_options(archive)
    archive.set_defaults(func=_archive)
