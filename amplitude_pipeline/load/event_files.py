"""Loading one Amplitude-format file (gzip JSON lines) from S3 into the two tables.

The file is streamed line by line; records are transformed and reduced per user in batches
of ``batch_size`` lines, and each batch is written with its checkpoint in one transaction
(CONTRACT §7). A fatal error commits the lines before it and raises :class:`EventFileLoadError`
with the exact position; the next run resumes after the checkpoint by itself.
"""

from __future__ import annotations

import gc
import queue
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from botocore.exceptions import BotoCoreError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from amplitude_pipeline.load.totals import WriteTotals
from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.dwh import BatchWriteCounts, DWHRepository, FileCheckpoint
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.batch import ReducedBatch
from amplitude_pipeline.transform.records import RecordError, UserPropertiesMemo, transform_single_record

DEFAULT_BATCH_SIZE = 100_000
START_OF_FILE = -1


@dataclass(kw_only=True)
class FileLoadResult(WriteTotals):
    file_key: str
    etag: str
    started_after: int
    last_successful_line: int = START_OF_FILE
    records: int = 0
    blank_lines: int = 0
    batches: int = 0
    already_loaded: bool = False


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


class FileLoadInProgressError(RuntimeError):
    """Another run holds the file's load lock."""


def load_event_file(
    dwh: DWHRepository,
    store: RawEventStore,
    key: str,
    *,
    start_after: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: Log | None = None,
) -> FileLoadResult:
    with dwh.file_load_lock(key) as acquired:
        if not acquired:
            raise FileLoadInProgressError(
                f"another run is loading {key} right now; run again when it has finished"
            )
        return _load_locked_file(dwh, store, key, start_after=start_after, batch_size=batch_size, log=log)


def _load_locked_file(
    dwh: DWHRepository,
    store: RawEventStore,
    key: str,
    *,
    start_after: int | None,
    batch_size: int,
    log: Log | None,
) -> FileLoadResult:
    mappings = dwh.mappings
    checkpoint = dwh.get_checkpoint(key)
    with store.open_lines(key) as (stored, lines):
        begin_after = resume_point(checkpoint, stored.etag, start_after)
        result = FileLoadResult(
            file_key=key, etag=stored.etag, started_after=begin_after, last_successful_line=begin_after
        )
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
        memo = UserPropertiesMemo()
        parse = orjson.loads
        line_index = START_OF_FILE
        lines_in_batch = 0
        with _BatchCommitter(dwh, result) as committer, _long_lived_objects_frozen():
            numbered_lines = enumerate(lines)
            while True:
                try:
                    line_index, line = next(numbered_lines)
                except StopIteration:
                    break
                except (EOFError, OSError, zlib.error, BotoCoreError) as error:
                    committer.fail(batch, line_index + 1, f"could not read the object: {error}")
                if line_index <= begin_after:
                    continue
                lines_in_batch += 1
                if not line or line.isspace():
                    result.blank_lines += 1
                else:
                    try:
                        record = transform_single_record(parse(line), mappings, memo)
                    except orjson.JSONDecodeError as error:
                        committer.fail(batch, line_index, f"malformed JSON line: {error}")
                    except RecordError as error:
                        committer.fail(batch, line_index, str(error))
                    batch.add(record, line_index)
                if lines_in_batch == batch_size:
                    committer.submit(batch, line_index, finished=False)
                    batch, lines_in_batch = ReducedBatch(), 0
            committer.submit(batch, max(line_index, begin_after), finished=True)
    return result


_Work = tuple[ReducedBatch, FileCheckpoint]


class _BatchCommitter:
    """Commits batches, in order, on a thread of its own.

    PostgreSQL merges one batch while the next is parsed and transformed; the queue holds at
    most one batch waiting, so memory stays at a few batches. Each batch commits with its
    checkpoint; after a failed commit the rest are dropped, and the loader stops at the first
    line of the failed batch.
    """

    def __init__(self, dwh: DWHRepository, result: FileLoadResult) -> None:
        self._dwh = dwh
        self._result = result
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=1)
        self._failure: EventFileLoadError | None = None
        self._thread = threading.Thread(target=self._run, name="dwh-batch-committer", daemon=True)

    def __enter__(self) -> _BatchCommitter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish()

    def submit(self, batch: ReducedBatch, last_line: int, finished: bool) -> None:
        if self._failure is not None:
            self._finish()
        checkpoint = FileCheckpoint(self._result.file_key, self._result.etag, last_line, finished)
        self._queue.put((batch, checkpoint))

    def fail(self, batch: ReducedBatch, line_index: int, message: str) -> NoReturn:
        """Commit what precedes the failing line, then stop with its position."""
        self.submit(batch, line_index - 1, finished=False)
        self._finish()
        raise EventFileLoadError(self._result, line_index, message)

    def _finish(self) -> None:
        """Wait until every submitted batch is committed; raise the commit failure, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            if self._failure is not None:
                continue  # keep draining, so that the loader never blocks on a full queue
            try:
                self._commit(*work)
            except BaseException as error:  # whatever it is, the load must fail with it
                self._failure = EventFileLoadError(
                    self._result,
                    self._result.last_successful_line + 1,
                    f"DWH write failed: {describe_write_error(error)}",
                )

    def _commit(self, batch: ReducedBatch, checkpoint: FileCheckpoint) -> None:
        result = self._result

        def write(conn: Connection) -> BatchWriteCounts:
            counts = self._dwh.write_batch(conn, batch)
            self._dwh.save_checkpoint(conn, checkpoint)
            return counts

        counts = self._dwh.run_in_transaction(write)
        result.add_batch(counts, batch.skipped_without_identity)
        result.last_successful_line = checkpoint.last_successful_line
        result.records += batch.records
        result.batches += 1


@contextmanager
def _long_lived_objects_frozen() -> Iterator[None]:
    """Keep the cyclic GC's full collections from rescanning everything that exists already.

    Dagster's import graph alone is millions of objects, and the loop allocates enough to
    trigger full collections that walk all of them: about a tenth of the load's time.
    Everything alive now is set aside for the loop's duration and handed back afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def describe_write_error(error: BaseException) -> str:
    """The driver's own error for a database failure (SQLAlchemy wraps it), else the exception."""
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    return f"{type(cause).__name__}: {cause}"


def _info(log: Log | None, message: str) -> None:
    if log is not None:
        log.info(message)
