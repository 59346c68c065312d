"""An object's bytes into chunks of records (``line_chunks``) and the worker process that makes them:
batch ends, resumption, the failing line, what a failed read or a dead worker says."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import signal
import time
from datetime import UTC
from typing import Any

import orjson
import pytest

from amplitude_pipeline.load import line_records
from amplitude_pipeline.load.line_records import LineChunk, LineFailure, line_chunks
from amplitude_pipeline.load.line_worker import LineWorker, LineWorkerError
from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings, load_field_mappings
from amplitude_pipeline_tests.corpus.manifest import load_cases
from amplitude_pipeline_tests.load.events import event
from amplitude_pipeline_tests.load.support import line_worker_pids
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS


@pytest.fixture(scope="module")
def mappings() -> FieldMappings:
    return load_field_mappings(DEFAULT_MAPPINGS)


def event_lines(count: int) -> list[bytes]:
    return [
        orjson.dumps(event(f"2024-01-08 10:00:{index:02d}", ehr_id=f"E{index}", amplitude_id=100 + index))
        for index in range(count)
    ]


def gzipped(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def chunks(body: bytes, mappings: FieldMappings, **options: Any) -> list[LineChunk]:
    options.setdefault("batch_size", 4)
    return list(line_chunks(io.BytesIO(body), mappings, **options))


def shape(found: list[LineChunk]) -> list[tuple[int, int, int, bool, bool, LineFailure | None]]:
    return [
        (
            chunk.last_line,
            len(chunk.records),
            chunk.blank_lines,
            chunk.ends_batch,
            chunk.finished,
            chunk.failure,
        )
        for chunk in found
    ]


def test_chunks_end_with_each_batch_and_count_blank_lines(mappings: FieldMappings) -> None:
    lines = event_lines(9)
    lines[5:5] = [b"", b"  "]  # lines 5 and 6 are blank: a batch counts them as lines
    found = chunks(gzipped(lines), mappings, chunk_lines=3)

    assert shape(found) == [
        (2, 3, 0, False, False, None),
        (3, 1, 0, True, False, None),
        (6, 1, 2, False, False, None),
        (7, 1, 0, True, False, None),
        (10, 3, 0, False, False, None),
        (10, 0, 0, False, True, None),
    ]
    records = [record for chunk in found for record in chunk.records]
    assert records == [transform_line(line, mappings) for line in lines if line.strip()]


def test_a_resumed_load_reads_only_the_lines_after_its_start(mappings: FieldMappings) -> None:
    found = chunks(gzipped(event_lines(10)), mappings, begin_after=5)

    assert shape(found) == [(9, 4, 0, True, False, None), (9, 0, 0, False, True, None)]
    assert [record.ehr_id for record in found[0].records] == ["E6", "E7", "E8", "E9"]


def test_a_resumption_past_the_end_finishes_at_its_start(mappings: FieldMappings) -> None:
    assert shape(chunks(gzipped(event_lines(3)), mappings, begin_after=7)) == [(7, 0, 0, False, True, None)]


def test_the_first_bad_line_ends_the_chunks_with_the_lines_before_it(mappings: FieldMappings) -> None:
    lines = event_lines(8)
    lines[6] = b'{"uuid": "not json'
    found = chunks(gzipped(lines), mappings)

    *_, last = found
    assert last.failure is not None and last.failure.line_index == 6 and not last.failure.retryable
    assert last.failure.message.startswith("malformed JSON line")
    assert (last.last_line, len(last.records), last.finished) == (5, 2, False)
    assert [record.ehr_id for chunk in found for record in chunk.records] == [f"E{i}" for i in range(6)]


def test_an_unexpected_error_while_reading_a_line_stops_at_its_line(
    mappings: FieldMappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = event_lines(10)
    real = line_records.EventLineDecoder.record

    def failing_on_line_5(self: Any, line: bytes) -> Any:
        if line == lines[5]:
            raise OverflowError("date value out of range")
        return real(self, line)

    monkeypatch.setattr(line_records.EventLineDecoder, "record", failing_on_line_5)
    *_, last = chunks(gzipped(lines), mappings, batch_size=100)

    assert last.failure == LineFailure(5, "unexpected OverflowError: date value out of range")
    assert last.last_line == 4


def test_a_truncated_object_stops_after_its_last_whole_line_for_good(mappings: FieldMappings) -> None:
    body = gzipped(event_lines(50))
    *_, last = chunks(body[: len(body) * 2 // 3], mappings, batch_size=1000)

    assert last.failure is not None and not last.failure.retryable
    assert last.failure.line_index == last.last_line + 1
    assert "the object itself is damaged" in last.failure.message


def test_a_chunk_pickles_to_equal_records_sharing_what_they_shared(mappings: FieldMappings) -> None:
    lines = event_lines(4) * 2
    (chunk,) = chunks(gzipped(lines), mappings, batch_size=100)

    copy = pickle.loads(pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL))

    assert copy == chunk
    assert {record.event_time.tzinfo for record in copy.records} == {UTC}
    assert copy.records[4].changeable is copy.records[0].changeable  # a repeated snapshot stays one tuple


class FailingAfter:
    """A body whose reads fail with ``error`` once ``intact`` bytes have been read."""

    def __init__(self, body: bytes, intact: int, error: Exception) -> None:
        self._body, self._intact, self._error, self._given = body, intact, error, 0

    def read(self, size: int, /) -> bytes:
        if self._given >= self._intact:
            raise self._error
        data = self._body[self._given : min(self._given + size, self._intact)]
        self._given += len(data)
        return data


def members(lines: list[bytes]) -> list[bytes]:
    """One gzip member a line: a read that breaks between members breaks between lines."""
    return [gzip.compress(line + b"\n") for line in lines]


def worker_chunks(body: Any, mappings: FieldMappings, **options: Any) -> list[LineChunk]:
    options.setdefault("begin_after", -1)
    options.setdefault("batch_size", 4)
    with LineWorker(mappings, **options) as worker:
        return list(worker.chunks(body))


def test_the_worker_gives_the_chunks_read_in_process(mappings: FieldMappings) -> None:
    lines = event_lines(11)
    lines[3] = b""
    body = gzipped(lines)

    assert worker_chunks(io.BytesIO(body), mappings, begin_after=1) == chunks(body, mappings, begin_after=1)


CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_worker_reads_every_corpus_object_as_it_is_read_in_process(
    case: Any, mappings: FieldMappings
) -> None:
    """The same chunks, failures and their messages included, from the gzip layer's cases up."""
    body = case.object_bytes(case.lines())
    assert worker_chunks(io.BytesIO(body), mappings, batch_size=2) == chunks(body, mappings, batch_size=2)


def test_the_worker_stops_at_the_first_bad_line(mappings: FieldMappings) -> None:
    lines = event_lines(9)
    lines[7] = b"[1, 2]"
    *_, last = worker_chunks(io.BytesIO(gzipped(lines)), mappings)

    assert last.failure == LineFailure(7, "record = [1, 2]: expected a JSON object, got a JSON array")
    assert last.last_line == 6


def test_a_read_that_fails_in_the_loader_stops_the_worker_at_the_next_line(mappings: FieldMappings) -> None:
    parts = members(event_lines(6))
    body = FailingAfter(b"".join(parts), sum(map(len, parts[:3])), ConnectionResetError("reset by peer"))

    *_, last = worker_chunks(body, mappings, batch_size=100)

    assert last.failure == LineFailure(
        3, "could not read the object: ConnectionResetError: reset by peer", retryable=True
    )
    assert last.last_line == 2


def test_a_killed_worker_stops_the_chunks_with_how_it_ended(mappings: FieldMappings) -> None:
    body = io.BytesIO(gzipped(event_lines(60) * 500))  # more chunks than the pipe holds
    with LineWorker(mappings, begin_after=-1, batch_size=4) as worker:
        received = worker.chunks(body)
        first = next(received)
        assert worker.pid is not None and list(line_worker_pids()) == [worker.pid]
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(LineWorkerError, match="killed by signal 9"):
            list(received)
    assert first.records


def test_a_worker_whose_records_are_not_wanted_is_ended(mappings: FieldMappings) -> None:
    body = io.BytesIO(gzipped(event_lines(400)))
    with LineWorker(mappings, begin_after=-1, batch_size=4) as worker:
        next(worker.chunks(body))
    deadline = time.monotonic() + 5
    while list(line_worker_pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(line_worker_pids()) == []
