"""An event object's compressed bytes into its lines' records, up to the first line that cannot be
loaded.

Inflating and reading each line (:class:`~amplitude_pipeline.transform.event_decoder.EventLineDecoder`)
is the part of a load that needs neither the database nor what came before:
:mod:`amplitude_pipeline.load.line_worker` runs it in a process of its own, beside the process
that reduces and writes. This module imports neither S3 nor the database, so that process starts
in a fraction of a second.

The records come in chunks of consecutive lines; a chunk never spans the end of a batch of
``batch_size`` lines (blank ones included), whose last line is the checkpoint the loader commits
with it (CONTRACT §7). The first line that fails ends the chunks: the last one holds the records
of the lines before it, and says why and where the load stops (:class:`LineFailure`); no line
after it is read into a record.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, Final

import msgspec

from amplitude_pipeline.inflate import Readable, gzip_line_blocks
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.transform.event_decoder import EventLineDecoder
from amplitude_pipeline.transform.event_lines import line_failure_message
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import TransformedRecord, UserPropertiesMemo

__all__ = ["START_OF_FILE", "LineChunk", "LineFailure", "ReadFailedError", "line_chunks", "unreadable"]

START_OF_FILE: Final = -1
CHUNK_LINES: Final = 100_000
"""Lines a chunk holds at most: small enough to keep both processes busy, large enough that the
per-message cost does not count."""
MEMO_USERS: Final = 100_000
"""Users whose last ``user_properties`` text the decoder remembers (~1 KiB each); the memo judges
whether it pays over as many lookups (:class:`UserPropertiesMemo`)."""


@dataclass(frozen=True)
class LineFailure:
    """The line a load stops at, and why."""

    line_index: int
    message: str
    retryable: bool = False


@dataclass
class LineChunk:
    """The records of consecutive lines, in line order, and where they end."""

    last_line: int
    """The last line the chunk covers."""
    records: list[TransformedRecord] = field(default_factory=list)
    blank_lines: int = 0
    ends_batch: bool = False
    """``last_line`` ends a batch: the loader commits the batch with it as the checkpoint."""
    finished: bool = False
    """The chunk ends the object."""
    failure: LineFailure | None = None
    """The line after ``last_line`` cannot be loaded: the load stops there."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by columns: the identifiers and times as msgpack (pickling a datetime costs as
        much as the rest of its record; msgpack has a compact form for it), the converted values
        as pickle, which sends a tuple shared by many records (a user's repeated snapshot) once,
        and strings shared by many tuples ("Kazan") once."""
        records = self.records
        columns = _IDENTIFIERS.encode([list(map(itemgetter(index), records)) for index in range(4)])
        values = (list(map(itemgetter(4), records)), list(map(itemgetter(5), records)))
        return (
            _chunk,
            (columns, values, self.last_line, self.blank_lines, self.ends_batch, self.finished, self.failure),
        )


_IDENTIFIERS: Final = msgspec.msgpack.Encoder()
_IDENTIFIER_COLUMNS: Final = msgspec.msgpack.Decoder(
    tuple[list[str], list[datetime], list[int | None], list[str | None]]
)


def _chunk(columns: bytes, values: tuple[list[Any], list[Any]], *fields: Any) -> LineChunk:
    uuids, times, amplitude_ids, ehr_ids = _IDENTIFIER_COLUMNS.decode(columns)
    records = list(map(TransformedRecord, uuids, times, amplitude_ids, ehr_ids, *values))
    return LineChunk(fields[0], records, *fields[1:])


class ReadFailedError(OSError):
    """Reading the object's bytes failed where they are read (another process): ``description``
    says how, as :func:`~amplitude_pipeline.retries.describe_error` said it there."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def unreadable(line_index: int, cause: BaseException) -> LineFailure:
    """The failure of a load whose object's bytes stopped making sense (or arriving) before
    ``line_index``."""
    if isinstance(cause, ReadFailedError):
        return LineFailure(line_index, f"could not read the object: {cause.description}", retryable=True)
    # A truncated or corrupt gzip stays so; a connection that failed beyond the retries may not.
    damaged = isinstance(cause, EOFError | zlib.error)
    advice = "; the object itself is damaged: replace it (new content loads from line 0)" if damaged else ""
    return LineFailure(line_index, f"could not read the object: {describe_error(cause)}{advice}", not damaged)


def line_chunks(
    stream: Readable,
    mappings: FieldMappings,
    *,
    begin_after: int = START_OF_FILE,
    batch_size: int,
    chunk_lines: int = CHUNK_LINES,
    memo_users: int = MEMO_USERS,
) -> Iterator[LineChunk]:
    """The records of the lines after ``begin_after`` of the gzip JSON-lines ``stream``, in chunks."""
    decoder = EventLineDecoder(mappings, UserPropertiesMemo(max_users=memo_users, window=memo_users))
    line_index, lines_in_batch = START_OF_FILE, 0
    chunk = LineChunk(line_index)
    try:
        for block in gzip_line_blocks(stream):
            for line in block:
                line_index += 1
                if line_index <= begin_after:
                    continue
                if not line or line.isspace():
                    chunk.blank_lines += 1
                else:
                    try:
                        chunk.records.append(decoder.record(line))
                    except Exception as error:  # whatever it is, the load stops at this line
                        chunk.last_line = line_index - 1
                        chunk.failure = LineFailure(line_index, line_failure_message(line, error))
                        yield chunk
                        return
                lines_in_batch += 1
                chunk.last_line = line_index
                if lines_in_batch == batch_size:
                    chunk.ends_batch, lines_in_batch = True, 0
                if chunk.ends_batch or len(chunk.records) + chunk.blank_lines == chunk_lines:
                    yield chunk
                    chunk = LineChunk(line_index)
    except (EOFError, OSError, zlib.error) as error:
        chunk.last_line = line_index
        chunk.failure = unreadable(line_index + 1, error)
        yield chunk
        return
    chunk.last_line, chunk.finished = max(line_index, begin_after), True
    yield chunk
