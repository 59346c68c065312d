"""Writing up to the record the database refuses, for both loaders (S3 files, the tmp table).

A batch is normally written whole by ``DWHRepository.write_batch`` (records reduced per user by
:class:`ReducedBatch`, merged set-based). When the database refuses a set of records for a reason
that belongs to one of them (a data exception, a constraint, a limit such as an index entry's
size), running the set again cannot help, and failing the whole set would throw away the good
records before the bad one. The
writer then finds the first record the database refuses, by halving the set inside savepoints,
and writes every record before it: CONTRACT §7's "everything before the failing line is
committed; nothing at or after it", for errors only the database can see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from amplitude_pipeline.storage.dwh import (
    BatchWriteCounts,
    DWHRepository,
    describe_db_error,
    is_record_level_db_error,
)
from amplitude_pipeline.transform.batch import ReducedBatch
from amplitude_pipeline.transform.records import TransformedRecord

PositionedRecord = tuple[int, TransformedRecord]
"""A record and its position in its source: a file's line index, or a row's place in its page."""


@dataclass
class PrefixWrite:
    """What :func:`write_records_up_to_refusal` wrote: ``records[:written]``, and why not more."""

    written: int
    counts: BatchWriteCounts
    skipped_without_identity: int
    refusal: BaseException | None = None
    """The database's error for ``records[written]`` when it refused that record."""


def write_records_up_to_refusal(
    dwh: DWHRepository, conn: Connection, records: Sequence[PositionedRecord]
) -> PrefixWrite:
    """Write ``records`` in ``conn``'s transaction or, when the database refuses one of them,
    every record before the first one it refuses.

    Errors that do not belong to a record (the connection, the SQL) are raised as they are.
    Costs one savepoint when every record is accepted, about 2·log2(n) when one is not.
    """
    written = PrefixWrite(0, BatchWriteCounts.zero(), 0)
    refusal = _try_write(dwh, conn, records, written)
    if refusal is None:
        return written
    # Invariant: records[:low] are written, and the database refuses records[low:high] together.
    low, high = 0, len(records)
    while high - low > 1:
        middle = (low + high) // 2
        error = _try_write(dwh, conn, records[low:middle], written)
        if error is None:
            low = middle
        else:
            high, refusal = middle, error
    written.refusal = refusal
    return written


def _try_write(
    dwh: DWHRepository, conn: Connection, records: Sequence[PositionedRecord], written: PrefixWrite
) -> BaseException | None:
    """Write ``records`` in a savepoint and add them to ``written``; the database's refusal, if any."""
    batch = ReducedBatch()
    for _, record in records:
        batch.add(record)
    try:
        with conn.begin_nested():
            counts = dwh.write_batch(conn, batch)
    except Exception as error:
        if not is_record_level_db_error(error):
            raise
        return error
    written.written += len(records)
    written.counts += counts
    written.skipped_without_identity += batch.skipped_without_identity
    return None


def write_failure_message(dwh: DWHRepository, error: BaseException) -> str:
    """What a load says when the DWH refused a write that no record explains, credentials taken out."""
    return f"DWH write failed: {dwh.redact(describe_db_error(error))}"


def refusal_message(dwh: DWHRepository, refusal: BaseException, what: str) -> str:
    """What a load says of the ``what`` ("line", "row") the database refused, credentials taken out."""
    return f"the database refused this {what}: {dwh.redact(describe_db_error(refusal))}"
