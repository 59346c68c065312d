"""Loading one Amplitude-format file (gzip JSON lines) from S3 into the two tables.

The file is streamed line by line; records are transformed and reduced per user in batches
of ``batch_size`` lines, and each batch is written with its checkpoint in one transaction
(CONTRACT §7). A fatal error commits the lines before it and raises :class:`EventFileLoadError`
with the exact position; the next run resumes after the checkpoint by itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from amplitude_pipeline.amplitude.client import Log
from amplitude_pipeline.storage.dwh import DWHRepository, FileCheckpoint, TableWriteCounts
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.batch import ReducedBatch
from amplitude_pipeline.transform.records import RecordError, transform_single_record

DEFAULT_BATCH_SIZE = 20_000
START_OF_FILE = -1


@dataclass
class FileLoadResult:
    file_key: str
    etag: str
    started_after: int
    last_successful_line: int = START_OF_FILE
    lines_read: int = 0
    records: int = 0
    blank_lines: int = 0
    skipped_without_identity: int = 0
    batches: int = 0
    already_loaded: bool = False
    permanent: TableWriteCounts = field(default_factory=TableWriteCounts)
    changeable: TableWriteCounts = field(default_factory=TableWriteCounts)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def duration_seconds(self) -> float:
        return round(time.monotonic() - self.started_at, 3)


class EventFileLoadError(Exception):
    """A fatal error at ``failed_line``; every line up to ``last_successful_line`` is committed."""

    def __init__(self, result: FileLoadResult, failed_line: int, error_message: str) -> None:
        super().__init__(
            f"{result.file_key}, line {failed_line}: {error_message} "
            f"(lines up to {result.last_successful_line} are loaded; a rerun resumes after it)"
        )
        self.result = result
        self.failed_line = failed_line
        self.error_message = error_message

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "file_key": self.result.file_key,
            "failed_line": self.failed_line,
            "last_successful_line": self.result.last_successful_line,
            "error_message": self.error_message,
        }


def resume_point(checkpoint: FileCheckpoint | None, etag: str, start_after: int | None) -> int:
    """Where to start: the override, else after the checkpoint of this very content."""
    if start_after is not None:
        return start_after
    if checkpoint is None or checkpoint.etag != etag:
        return START_OF_FILE
    return checkpoint.last_successful_line


def load_event_file(
    dwh: DWHRepository,
    store: RawEventStore,
    key: str,
    *,
    start_after: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: Log | None = None,
) -> FileLoadResult:
    mappings = dwh.mappings
    checkpoint = dwh.get_checkpoint(key)
    with store.open_lines(key) as (stored, lines):
        begin_after = resume_point(checkpoint, stored.etag, start_after)
        result = FileLoadResult(key, stored.etag, started_after=begin_after, last_successful_line=begin_after)
        if checkpoint is not None and start_after is None:
            if checkpoint.etag != stored.etag:
                _info(log, f"{key}: content changed since the checkpoint (ETag); loading from the start")
            elif checkpoint.finished:
                result.already_loaded = True
                _info(
                    log, f"{key}: already loaded up to line {checkpoint.last_successful_line}; nothing to do"
                )
                return result
        if begin_after >= 0:
            _info(log, f"{key}: resuming after line {begin_after}")

        batch = ReducedBatch()
        line_index = START_OF_FILE
        for line_index, line in enumerate(lines):
            if line_index <= begin_after:
                continue
            result.lines_read += 1
            if not line.strip():
                result.blank_lines += 1
            else:
                try:
                    record = transform_single_record(orjson.loads(line), mappings)
                except orjson.JSONDecodeError as error:
                    _fail(dwh, batch, result, line_index, f"malformed JSON line: {error}")
                except RecordError as error:
                    _fail(dwh, batch, result, line_index, str(error))
                batch.add(record, line_index)
            if result.lines_read % batch_size == 0:
                _commit(dwh, batch, result, line_index, finished=False)
                batch = ReducedBatch()
        _commit(dwh, batch, result, max(line_index, begin_after), finished=True)
    return result


def _commit(
    dwh: DWHRepository, batch: ReducedBatch, result: FileLoadResult, last_line: int, finished: bool
) -> None:
    checkpoint = FileCheckpoint(result.file_key, result.etag, last_line, finished)

    def write(conn: Connection) -> None:
        counts = dwh.write_batch(conn, batch)
        dwh.save_checkpoint(conn, checkpoint)
        result.permanent += counts.permanent
        result.changeable += counts.changeable

    try:
        dwh.run_in_transaction(write)
    except DBAPIError as error:
        raise EventFileLoadError(
            result,
            result.last_successful_line + 1,
            f"DWH write failed: {type(error.orig).__name__}: {error.orig}",
        ) from error
    result.last_successful_line = last_line
    result.records += batch.records
    result.skipped_without_identity += batch.skipped_without_identity
    result.batches += 1


def _fail(
    dwh: DWHRepository, batch: ReducedBatch, result: FileLoadResult, line_index: int, message: str
) -> NoReturn:
    """Commit what precedes the failing line, then stop with its position."""
    _commit(dwh, batch, result, line_index - 1, finished=False)
    raise EventFileLoadError(result, line_index, message)


def _info(log: Log | None, message: str) -> None:
    if log is not None:
        log.info(message)
