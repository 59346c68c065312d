"""Migrating ``tmp_user_properties`` into the two tables (CONTRACT §6, §7).

Unmigrated rows are taken a page at a time, oldest ``event_time`` first, with
``FOR UPDATE SKIP LOCKED`` so that concurrent migrations never take the same rows. A page's
table writes and its ``migrated = true`` commit in one transaction, through the same reducer
and writer as the S3 loader. A row that cannot be transformed stops the migration: the rows
before it in its page are committed, it and the rest of the page stay unmigrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from amplitude_pipeline.load.totals import LoadStoppedError, WriteTotals
from amplitude_pipeline.load.writer import (
    PositionedRecord,
    refusal_message,
    write_failure_message,
    write_records_up_to_refusal,
)
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.storage.dwh import BatchWriteCounts, DWHRepository, is_db_error
from amplitude_pipeline.transform.records import RecordError, UserPropertiesMemo, transform_single_record

DEFAULT_PAGE_SIZE = 5000


@dataclass(kw_only=True)
class MigrationResult(WriteTotals):
    pages: int = 0
    rows_migrated: int = 0


class TmpRowMigrationError(LoadStoppedError):
    """A row (``row_uuid``) or the DWH (``row_uuid`` None) stopped the migration; the pages and
    rows before it are committed."""

    result: MigrationResult

    def __init__(
        self, result: MigrationResult, row_uuid: str | None, error_message: str, *, retryable: bool = False
    ) -> None:
        where = f"row {row_uuid}" if row_uuid else "a page"
        super().__init__(
            f"tmp_user_properties {where}: {error_message} ({result.rows_migrated} rows migrated before it; "
            "fix the row or the mapping and run again)",
            result,
            error_message,
            retryable=retryable,
        )
        self.row_uuid = row_uuid

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "uuid": self.row_uuid or "",
            "error_message": self.error_message,
            "rows_migrated": self.result.rows_migrated,
        }


@dataclass
class _PageOutcome:
    rows: int
    migrated: int
    skipped_without_identity: int
    counts: BatchWriteCounts | None = None
    failed_uuid: str | None = None
    failure: str | None = None


def migrate_tmp_user_properties(
    dwh: DWHRepository, *, page_size: int = DEFAULT_PAGE_SIZE, log: Log | None = None
) -> MigrationResult:
    result = MigrationResult()
    memo = UserPropertiesMemo()
    while True:
        try:
            outcome = dwh.run_in_transaction(lambda conn: _migrate_page(dwh, conn, page_size, memo), log)
        except Exception as error:
            raise TmpRowMigrationError(
                result, None, write_failure_message(dwh, error), retryable=is_db_error(error)
            ) from error
        if outcome.rows == 0:
            return result
        result.pages += 1
        result.rows_migrated += outcome.migrated
        if outcome.counts is not None:
            result.add_batch(outcome.counts, outcome.skipped_without_identity)
        if log is not None:
            log.info(f"tmp_user_properties page {result.pages}: {outcome.migrated} rows migrated")
        if outcome.failure is not None:
            raise TmpRowMigrationError(result, outcome.failed_uuid, outcome.failure)
        if outcome.rows < page_size:
            return result


def _migrate_page(
    dwh: DWHRepository, conn: Connection, page_size: int, memo: UserPropertiesMemo
) -> _PageOutcome:
    rows = dwh.lock_unmigrated_page(conn, page_size)
    outcome = _PageOutcome(rows=len(rows), migrated=0, skipped_without_identity=0)
    records: list[PositionedRecord] = []
    for position, row in enumerate(rows):
        try:
            records.append((position, transform_single_record(row, dwh.mappings, memo)))
        except RecordError as error:
            outcome.failed_uuid, outcome.failure = row["uuid"], str(error)
            break
        except Exception as error:  # a row must never fail the migration without its uuid
            outcome.failed_uuid, outcome.failure = row["uuid"], f"unexpected {describe_error(error)}"
            break
    if not records:
        return outcome
    written = write_records_up_to_refusal(dwh, conn, records)
    if written.refusal is not None:
        outcome.failed_uuid = rows[records[written.written][0]]["uuid"]
        outcome.failure = refusal_message(dwh, written.refusal, "row")
    migrated = [rows[position]["uuid"] for position, _ in records[: written.written]]
    if migrated:
        dwh.mark_migrated(conn, migrated)
    outcome.counts = written.counts
    outcome.migrated = len(migrated)
    outcome.skipped_without_identity = written.skipped_without_identity
    return outcome
