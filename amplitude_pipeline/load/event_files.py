"""Loading one Amplitude-format file (gzip JSON lines) from S3 into the two tables.

The file is streamed line by line; records are transformed and reduced per user in batches
of ``batch_size`` lines, and each batch is written with its checkpoint in one transaction
(CONTRACT §7). A fatal error commits the lines before it and raises :class:`EventFileLoadError`
with the exact position; the next run resumes after the checkpoint by itself.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Connection

from amplitude_pipeline.collector import collect_young
from amplitude_pipeline.collector import collector_paused as _collector_paused
from amplitude_pipeline.load.line_records import START_OF_FILE, LineChunk, line_chunks, unreadable
from amplitude_pipeline.load.line_worker import LineWorker, LineWorkerError
from amplitude_pipeline.load.totals import LoadStoppedError, WriteTotals
from amplitude_pipeline.load.writer import (
    PrefixWrite,
    refusal_message,
    write_failure_message,
    write_records_up_to_refusal,
)
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.storage.dwh import (
    BatchWriteCounts,
    DWHRepository,
    FileCheckpoint,
    describe_db_error,
    is_db_error,
    is_record_level_db_error,
)
from amplitude_pipeline.storage.s3 import RawEventStore, ResumingBody, StoredObject, is_missing_object_error
from amplitude_pipeline.transform.batch import ReducedBatch, StoredPermanentValues
from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import UserPropertiesMemo

DEFAULT_BATCH_SIZE = 100_000
DEFAULT_LOCK_WAIT_SECONDS = 3600.0
LINES_BETWEEN_COLLECTIONS = 1_000_000
LINE_WORKER_MIN_BYTES = 2 << 20


@dataclass(kw_only=True)
class FileLoadResult(WriteTotals):
    file_key: str
    etag: str
    started_after: int
    last_successful_line: int = START_OF_FILE
    records: int = 0
    """Records this load committed."""
    records_before: int = 0
    """Records earlier loads of this content committed (the checkpoint's, when resuming)."""
    blank_lines: int = 0
    batches: int = 0
    already_loaded: bool = False

    def checkpoint(self, last_successful_line: int, finished: bool, records: int = 0) -> FileCheckpoint:
        """The checkpoint after ``records`` more records, up to ``last_successful_line``."""
        return FileCheckpoint(
            self.file_key,
            self.etag,
            last_successful_line,
            finished,
            records_loaded=self.records_before + self.records + records,
        )


class EventFileLoadError(LoadStoppedError):
    """A fatal error at ``failed_line``; every line up to ``last_successful_line`` is committed."""

    result: FileLoadResult

    def __init__(
        self, result: FileLoadResult, failed_line: int, error_message: str, *, retryable: bool = False
    ) -> None:
        super().__init__(
            f"{result.file_key}, line {failed_line}: {error_message} "
            f"({_lines_phrase(result.last_successful_line)} loaded; a rerun resumes at line "
            f"{result.last_successful_line + 1})",
            result,
            error_message,
            retryable=retryable,
        )
        self.failed_line = failed_line

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
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> FileLoadResult:
    """Load ``key`` into both tables, resuming after its checkpoint (CONTRACT §7).

    When another run is loading the same file, wait up to ``lock_wait_seconds`` for it (the
    weekly table asset and the S3 sensor's job may both be handed a new weekly object).
    """
    with dwh.file_load_lock(key, lock_wait_seconds, log) as acquired:
        if not acquired:
            raise FileLoadInProgressError(
                f"another run is loading {key} and did not finish within {lock_wait_seconds:.0f} s; "
                "run again when it has finished"
            )
        try:
            try:
                return _load_locked_file(
                    dwh, store, key, start_after=start_after, batch_size=batch_size, log=log
                )
            except _RefusedBatch as refused:
                raise _commit_up_to_refused_record(dwh, store, refused, log) from None
            except (ClientError, BotoCoreError) as error:
                if is_missing_object_error(error):
                    raise
                raise _unopenable(dwh, key, start_after, error) from error
        except EventFileLoadError as stopped:
            _record_error(dwh, stopped, log)
            raise


def _record_error(dwh: DWHRepository, stopped: EventFileLoadError, log: Log | None) -> None:
    """Say on the file's checkpoint why its load stopped (its metrics group reports it until the
    file loads). Best effort: the DWH may be what stopped the load."""
    result = stopped.result
    try:
        dwh.record_load_error(
            result.checkpoint(result.last_successful_line, finished=False), stopped.error_message
        )
    except Exception as error:
        if log is not None:
            log.warning(f"{result.file_key}: could not record why its load stopped: {describe_error(error)}")


def _unopenable(
    dwh: DWHRepository, key: str, start_after: int | None, error: BaseException
) -> EventFileLoadError:
    """S3 would not open the object (beyond botocore's retries): stop where the load would start."""
    checkpoint = dwh.get_checkpoint(key)
    begin_after = resume_point(checkpoint, checkpoint.etag if checkpoint else "", start_after)
    result = FileLoadResult(
        file_key=key, etag="", started_after=begin_after, last_successful_line=begin_after
    )
    return EventFileLoadError(
        result, begin_after + 1, f"could not open the object: {describe_error(error)}", retryable=True
    )


def _load_locked_file(
    dwh: DWHRepository,
    store: RawEventStore,
    key: str,
    *,
    start_after: int | None,
    batch_size: int,
    log: Log | None,
) -> FileLoadResult:
    checkpoint = dwh.get_checkpoint(key)
    with store.open_object(key, log) as (stored, body):
        result = _start(checkpoint, stored.etag, key, start_after, log)
        if not result.already_loaded:
            # Unfinished from now on: a load that dies before its first batch is still seen as stuck.
            started = result.checkpoint(result.started_after, finished=False)
            dwh.run_in_transaction(lambda conn: dwh.save_checkpoint(conn, started), log)
            _load_lines(dwh, result, stored, body, batch_size, log)
    return result


def _load_lines(
    dwh: DWHRepository,
    result: FileLoadResult,
    stored: StoredObject,
    body: ResumingBody,
    batch_size: int,
    log: Log | None,
) -> None:
    """Reduce into batches of ``batch_size`` lines the records read from ``body`` after
    ``result.started_after``, each committed with its checkpoint; stop at the first line that
    cannot be loaded."""
    batch, last_line = ReducedBatch(), result.started_after
    collected_at = last_line
    with (
        _read_lines(dwh.mappings, result.started_after, batch_size, stored, body) as chunks,
        _BatchCommitter(dwh, result, log) as committer,
        _collector_paused(),
    ):
        try:
            for chunk in chunks:
                add = batch.add
                for record in chunk.records:
                    add(record)
                result.blank_lines += chunk.blank_lines
                last_line = chunk.last_line
                if chunk.failure is not None:
                    failure = chunk.failure
                    committer.fail(batch, failure.line_index, failure.message, retryable=failure.retryable)
                if chunk.ends_batch or chunk.finished:
                    committer.submit(batch, last_line, finished=chunk.finished)
                    batch = ReducedBatch()
                    if last_line - collected_at >= LINES_BETWEEN_COLLECTIONS:
                        # Each collection walks the two batches alive (~a million objects): now
                        # and then is enough for the few cycles a commit leaves (SQLAlchemy's).
                        collect_young()
                        collected_at = last_line
        except LineWorkerError as error:
            committer.fail(batch, last_line + 1, str(error), retryable=True)


@contextmanager
def _read_lines(
    mappings: FieldMappings, begin_after: int, batch_size: int, stored: StoredObject, body: ResumingBody
) -> Iterator[Iterator[LineChunk]]:
    """The object's records, read by the line worker (a process of its own), or here when the
    object is smaller than ``LINE_WORKER_MIN_BYTES``: starting the worker costs ~0.2 s, more than
    reading a small object's lines, and a table run's start-up on a small week cannot afford it.
    Either way the chunks are :func:`line_chunks`'s."""
    if stored.size < LINE_WORKER_MIN_BYTES:
        yield line_chunks(body, mappings, begin_after=begin_after, batch_size=batch_size)
        return
    with LineWorker(mappings, begin_after=begin_after, batch_size=batch_size) as worker:
        yield worker.chunks(body)


def _start(
    checkpoint: FileCheckpoint | None, etag: str, key: str, start_after: int | None, log: Log | None
) -> FileLoadResult:
    """The load's starting point (CONTRACT §7), said in the log; ``already_loaded`` when a finished
    checkpoint of this very content leaves nothing to do."""
    begin_after = resume_point(checkpoint, etag, start_after)
    same_content = checkpoint is not None and checkpoint.etag == etag
    result = FileLoadResult(
        file_key=key,
        etag=etag,
        started_after=begin_after,
        last_successful_line=begin_after,
        # Lines before the start are loaded already (a start_after that goes back over loaded
        # lines counts them again: the count is the records committed, not distinct lines).
        records_before=checkpoint.records_loaded if same_content and begin_after >= 0 and checkpoint else 0,
    )
    if checkpoint is not None and start_after is None:
        if checkpoint.etag != etag:
            _info(log, f"{key}: content changed since the checkpoint (ETag); loading from the start")
        elif checkpoint.finished:
            result.already_loaded = True
            _info(
                log, f"{key}: already loaded, {_lines_phrase(checkpoint.last_successful_line)}; nothing to do"
            )
    if begin_after >= 0 and not result.already_loaded:
        _info(log, f"{key}: resuming at line {begin_after + 1} ({_lines_phrase(begin_after)} are loaded)")
    return result


def _lines_phrase(last_successful_line: int) -> str:
    """Lines as a person counts them: "lines 0–41" rather than "up to 41", "no line" rather than -1."""
    if last_successful_line < 0:
        return "no line"
    if last_successful_line == 0:
        return "line 0"
    return f"lines 0–{last_successful_line}"


class _RefusedBatch(Exception):
    """The database refused lines ``first_line``–``last_line`` for a reason of some record's."""

    def __init__(self, result: FileLoadResult, first_line: int, last_line: int, error: BaseException) -> None:
        super().__init__(f"lines {first_line}–{last_line} refused: {describe_db_error(error)}")
        self.result = result
        self.first_line = first_line
        self.last_line = last_line


def _commit_up_to_refused_record(
    dwh: DWHRepository, store: RawEventStore, refused: _RefusedBatch, log: Log | None
) -> EventFileLoadError:
    """Commit the refused batch's lines before the record the database refuses; the error naming it.

    The batch's records are read again from the object (they transformed fine the first time)
    and written by :func:`write_records_up_to_refusal`, whose savepoints find the record.
    """
    result = refused.result
    first, last = refused.first_line, refused.last_line
    _info(log, f"{result.file_key}: the database refused lines {first}–{last}; finding the line it refuses")
    mappings, memo, records = dwh.mappings, UserPropertiesMemo(), []
    line_index = START_OF_FILE
    try:
        with store.open_lines(result.file_key, log) as (stored, lines):
            if stored.etag != result.etag:
                return EventFileLoadError(
                    result, first, "the object was replaced while it was loaded; run again", retryable=True
                )
            for line_index, line in enumerate(lines):
                if line_index > last:
                    break
                if line_index >= first and line and not line.isspace():
                    records.append((line_index, transform_line(line, mappings, memo)))
    except (EOFError, OSError, zlib.error, BotoCoreError) as error:
        failure = unreadable(line_index + 1, error)
        return EventFileLoadError(result, first, failure.message, retryable=failure.retryable)

    def write(conn: Connection) -> PrefixWrite:
        prefix = write_records_up_to_refusal(dwh, conn, records)
        stop = records[prefix.written][0] if prefix.refusal is not None else last + 1
        dwh.save_checkpoint(conn, result.checkpoint(stop - 1, finished=False, records=prefix.written))
        return prefix

    prefix = dwh.run_in_transaction(write, log)
    result.add_batch(prefix.counts, prefix.skipped_without_identity)
    result.records += prefix.written
    result.batches += 1
    if prefix.refusal is None:
        result.last_successful_line = last
        return EventFileLoadError(
            result,
            last + 1,
            f"the database refused lines {first}–{last} together, then accepted them in parts; "
            "run again to load the rest",
            retryable=True,
        )
    refused_line = records[prefix.written][0]
    result.last_successful_line = refused_line - 1
    return EventFileLoadError(
        result,
        refused_line,
        refusal_message(dwh, prefix.refusal, "line"),
    )


_Work = tuple[ReducedBatch, int, bool]
"""A batch, the last line it covers, and whether it ends the file."""


class _BatchCommitter:
    """Commits batches, in order, on a thread of its own.

    PostgreSQL merges one batch while the next is reduced. A batch is handed over only when the
    previous one is committed, so at most two batches are alive: the one being committed and the
    one being built (a batch holds its records until it is written). Each batch is sealed
    (:meth:`ReducedBatch.seal`: its permanent rows resolved, without those this load has written
    already) and commits with its checkpoint; after a failed commit the rest are dropped, and
    the loader stops at the first line of the failed batch.
    """

    def __init__(self, dwh: DWHRepository, result: FileLoadResult, log: Log | None) -> None:
        self._dwh = dwh
        self._result = result
        self._log = log
        self._queue: queue.Queue[_Work | None] = queue.Queue(maxsize=1)
        self._idle = threading.Semaphore(1)
        self._failure: EventFileLoadError | _RefusedBatch | None = None
        self._stored_permanent = StoredPermanentValues()
        self._thread = threading.Thread(target=self._run, name="dwh-batch-committer", daemon=True)

    def __enter__(self) -> _BatchCommitter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._finish()

    def submit(self, batch: ReducedBatch, last_line: int, finished: bool) -> None:
        if self._failure is not None:
            self._finish()
        self._idle.acquire()  # the previous batch is committed (or dropped)
        self._queue.put((batch, last_line, finished))

    def fail(self, batch: ReducedBatch, line_index: int, message: str, retryable: bool = False) -> NoReturn:
        """Commit what precedes the failing line, then stop with its position."""
        self.submit(batch, line_index - 1, finished=False)
        self._finish()
        raise EventFileLoadError(self._result, line_index, message, retryable=retryable)

    def _finish(self) -> None:
        """Wait until every submitted batch is committed; raise the commit failure, if any."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                self._commit_unless_failed(*work)
            finally:
                del work  # the batch's records go as soon as it is written
                self._idle.release()

    def _commit_unless_failed(self, batch: ReducedBatch, last_line: int, finished: bool) -> None:
        if self._failure is not None:
            return  # keep draining, so that the loader never blocks
        checkpoint = self._result.checkpoint(last_line, finished, records=batch.records)
        try:
            batch.seal(self._stored_permanent)
            self._commit(batch, checkpoint)
        except BaseException as error:  # whatever it is, the load must fail with it
            first_line = self._result.last_successful_line + 1
            if is_record_level_db_error(error):
                self._failure = _RefusedBatch(
                    self._result, first_line, checkpoint.last_successful_line, error
                )
            else:
                self._failure = EventFileLoadError(
                    self._result,
                    first_line,
                    write_failure_message(self._dwh, error),
                    retryable=is_db_error(error),
                )

    def _commit(self, batch: ReducedBatch, checkpoint: FileCheckpoint) -> None:
        result = self._result

        def write(conn: Connection) -> BatchWriteCounts:
            counts = self._dwh.write_batch(conn, batch) if batch.records else BatchWriteCounts.zero()
            self._dwh.save_checkpoint(conn, checkpoint)
            return counts

        counts = self._dwh.run_in_transaction(write, self._log)
        result.add_batch(counts, batch.skipped_without_identity)
        result.last_successful_line = checkpoint.last_successful_line
        result.records += batch.records
        result.batches += 1


def _info(log: Log | None, message: str) -> None:
    if log is not None:
        log.info(message)
