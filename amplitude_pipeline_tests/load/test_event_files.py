"""The S3 event-file loader against real SeaweedFS and PostgreSQL (CONTRACT §6, §7)."""

import gzip
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from amplitude_pipeline.load import event_files
from amplitude_pipeline.load.event_files import EventFileLoadError, FileLoadInProgressError, load_event_file
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore, is_missing_object_error
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import fail_a_batch_write, forbid_city, line_worker_pids, rows
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS, NewDWH

pytestmark = pytest.mark.integration


def only_row(dwh: DWHRepository, table_name: str) -> dict[str, Any]:
    found = rows(dwh, table_name)
    assert len(found) == 1, found
    return found[0]


def load(dwh: DWHRepository, store: RawEventStore, events: list[dict[str, Any]], **kwargs: Any) -> Any:
    key = upload_events(store, "file.jsonl.gz", events)
    return load_event_file(dwh, store, key, **kwargs)


class TestChangeableFreshness:
    def test_an_older_event_after_a_newer_one_does_not_overwrite(self, dwh, raw_event_store):
        newer = event("2024-01-08 12:00:00.000000", ehr_id="E1", city="Казань")
        older = event("2024-01-08 10:00:00.000000", ehr_id="E1", city="Тула")
        load(dwh, raw_event_store, [newer, older])
        row = only_row(dwh, "changeable")
        assert (row["city"], row["uuid"]) == ("Казань", newer["uuid"])

    def test_an_older_event_in_a_later_batch_does_not_overwrite(self, dwh, raw_event_store):
        newer = event("2024-01-08 12:00:00", ehr_id="E1", city="Казань")
        older = event("2024-01-08 10:00:00", ehr_id="E1", city="Тула")
        load(dwh, raw_event_store, [newer, older], batch_size=1)
        assert only_row(dwh, "changeable")["city"] == "Казань"

    def test_same_values_at_a_newer_time_keep_the_row(self, dwh, raw_event_store):
        first = event("2024-01-08 10:00:00", ehr_id="E1")
        same_later = event("2024-01-08 12:00:00", ehr_id="E1")
        result = load(dwh, raw_event_store, [first, same_later], batch_size=1)
        row = only_row(dwh, "changeable")
        assert row["uuid"] == first["uuid"]
        assert (result.changeable.inserted, result.changeable.updated, result.changeable.unchanged) == (
            1,
            0,
            1,
        )

    def test_different_values_at_a_newer_time_replace_the_row(self, dwh, raw_event_store):
        first = event("2024-01-08 10:00:00", ehr_id="E1", premium=False)
        later = event("2024-01-08 12:00:00", ehr_id="E1", premium="yes")
        result = load(dwh, raw_event_store, [first, later], batch_size=1)
        row = only_row(dwh, "changeable")
        assert (row["is_premium"], row["uuid"]) == (True, later["uuid"])
        assert result.changeable.updated == 1

    def test_equal_times_the_later_line_wins(self, dwh, raw_event_store):
        one = event("2024-01-08 10:00:00", ehr_id="E1", city="Казань")
        two = event("2024-01-08 10:00:00", ehr_id="E1", city="Тула")
        load(dwh, raw_event_store, [one, two])
        assert only_row(dwh, "changeable")["uuid"] == two["uuid"]

    def test_a_flip_and_back_within_a_batch_replaces_the_stored_row(self, dwh, raw_event_store):
        load(dwh, raw_event_store, [event("2024-01-08 09:00:00", ehr_id="E1", city="A")])
        back = event("2024-01-08 11:00:00", ehr_id="E1", city="A")
        load(dwh, raw_event_store, [event("2024-01-08 10:00:00", ehr_id="E1", city="B"), back])
        assert only_row(dwh, "changeable")["uuid"] == back["uuid"]


class TestPermanent:
    def test_the_earliest_record_sets_the_row_and_later_ones_fill_nulls(self, dwh, raw_event_store):
        earliest = event("2024-01-08 09:00:00", ehr_id="E1", gender="м", birth_date=None)
        later = event("2024-01-08 11:00:00", ehr_id="E1", gender="ж", birth_date="17.05.1990")
        load(dwh, raw_event_store, [later, earliest])
        row = only_row(dwh, "permanent")
        assert (row["gender"], str(row["birth_date"]), row["uuid"]) == (
            "male",
            "1990-05-17",
            earliest["uuid"],
        )

    def test_a_later_batch_fills_only_nulls(self, dwh, raw_event_store):
        first = event("2024-01-08 09:00:00", ehr_id="E1", gender="м", initial_utm_source=None)
        second = event("2024-01-08 11:00:00", ehr_id="E1", gender="ж", initial_utm_source="google")
        result = load(dwh, raw_event_store, [first, second], batch_size=1)
        row = only_row(dwh, "permanent")
        assert (row["gender"], row["initial_utm_source"], row["uuid"]) == ("male", "google", first["uuid"])
        assert (result.permanent.inserted, result.permanent.updated) == (1, 1)

    def test_a_repeated_row_is_not_written_again_and_counts_as_unchanged(self, dwh, raw_event_store):
        first = event("2024-01-08 09:00:00", ehr_id="E1", gender="м", initial_utm_source=None)
        repeat = event("2024-01-08 10:00:00", ehr_id="E1", gender="м", initial_utm_source=None)
        fills = event("2024-01-08 11:00:00", ehr_id="E1", gender="ж", initial_utm_source="google")
        written: list[int] = []
        real_write_batch = DWHRepository.write_batch

        def write_batch(self: DWHRepository, conn: Any, batch: Any) -> Any:
            written.append(len(batch.permanent_rows()))
            return real_write_batch(self, conn, batch)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(DWHRepository, "write_batch", write_batch)
            result = load(dwh, raw_event_store, [first, repeat, fills], batch_size=1)
        row = only_row(dwh, "permanent")
        assert (row["gender"], row["initial_utm_source"], row["uuid"]) == ("male", "google", first["uuid"])
        assert written == [1, 0, 1]
        counts = result.permanent
        assert (counts.candidates, counts.inserted, counts.updated, counts.unchanged) == (3, 1, 1, 1)


class TestIdentity:
    def test_anonymous_users_are_kept_per_amplitude_id(self, dwh, raw_event_store):
        load(
            dwh,
            raw_event_store,
            [
                event("2024-01-08 09:00:00", amplitude_id=11, city="A"),
                event("2024-01-08 10:00:00", amplitude_id=11, city="B"),
                event("2024-01-08 09:00:00", amplitude_id=12, city="C"),
            ],
        )
        found = rows(dwh, "changeable")
        assert [(row["ehr_id"], row["amplitude_id"], row["city"]) for row in found] == [
            (None, 11, "B"),
            (None, 12, "C"),
        ]
        assert rows(dwh, "permanent") == []

    def test_records_without_any_identity_are_counted_not_loaded(self, dwh, raw_event_store):
        result = load(dwh, raw_event_store, [event("2024-01-08 09:00:00", amplitude_id=None)])
        assert result.skipped_without_identity == 1
        assert rows(dwh, "changeable") == []


def write_mappings(path: Path, extra_ignore: list[str]) -> Path:
    text = DEFAULT_MAPPINGS.read_text(encoding="utf-8")
    lines = "".join(f"  - {key}\n" for key in extra_ignore)
    path.write_text(text.replace("ignore:\n", f"ignore:\n{lines}", 1), encoding="utf-8")
    return path


def thousand_events_with_unknown_key_at_500() -> list[dict[str, Any]]:
    events = []
    for index in range(1000):
        user = index % 37
        events.append(
            event(
                f"2024-01-08 {index // 60 % 24:02d}:{index % 60:02d}:00",
                ehr_id=f"E{user}" if user % 5 else None,
                amplitude_id=1000 + user,
                city=f"city-{index // 100}",
                premium=index % 300 > 150,
            )
        )
    events[500]["user_properties"]["favourite_colour"] = "green"
    return events


class TestInterruption:
    def test_a_fatal_line_keeps_exactly_the_lines_before_it_and_a_rerun_finishes(
        self, tmp_path, raw_event_store, new_dwh
    ):
        mappings_path = Path(shutil.copy(DEFAULT_MAPPINGS, tmp_path / "field_mappings.yaml"))
        strict = new_dwh(mappings_path)
        events = thousand_events_with_unknown_key_at_500()
        key = upload_events(raw_event_store, "week.jsonl.gz", events)

        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(strict, raw_event_store, key, batch_size=128)
        assert failure.value.metadata == {
            "file_key": key,
            "failed_line": 500,
            "last_successful_line": 499,
            "error_message": failure.value.error_message,
        }
        assert "favourite_colour" in failure.value.error_message
        assert failure.value.retryable is False

        reference_first_half = _clean_load(raw_event_store, tmp_path, events[:500], new_dwh)
        assert rows(strict, "permanent") == rows(reference_first_half, "permanent")
        assert rows(strict, "changeable") == rows(reference_first_half, "changeable")

        write_mappings(mappings_path, ["favourite_colour"])
        fixed = new_dwh(mappings_path, schema=strict.db_schema, create=False)
        resumed = load_event_file(fixed, raw_event_store, key, batch_size=128)
        assert (resumed.started_after, resumed.records) == (499, 500)

        reference_whole = _clean_load(raw_event_store, tmp_path, events, new_dwh)
        assert rows(fixed, "permanent") == rows(reference_whole, "permanent")
        assert rows(fixed, "changeable") == rows(reference_whole, "changeable")

    def test_start_after_overrides_the_checkpoint(self, dwh, raw_event_store):
        events = [event(f"2024-01-08 10:00:0{i}", ehr_id=f"E{i}") for i in range(5)]
        key = upload_events(raw_event_store, "file.jsonl.gz", events)
        load_event_file(dwh, raw_event_store, key)
        again = load_event_file(dwh, raw_event_store, key, start_after=2)
        assert (again.started_after, again.records, again.changeable.unchanged) == (2, 2, 2)
        whole = load_event_file(dwh, raw_event_store, key, start_after=-1)
        assert (whole.records, whole.changeable.inserted, whole.changeable.updated) == (5, 0, 0)

    def test_a_finished_file_is_not_read_again(self, dwh, raw_event_store):
        events = [event("2024-01-08 10:00:00", ehr_id="E1")]
        key = upload_events(raw_event_store, "file.jsonl.gz", events)
        load_event_file(dwh, raw_event_store, key)
        before = rows(dwh, "changeable"), rows(dwh, "permanent")
        rerun = load_event_file(dwh, raw_event_store, key)
        assert (rerun.already_loaded, rerun.records, rerun.last_successful_line) == (True, 0, 0)
        assert (rows(dwh, "changeable"), rows(dwh, "permanent")) == before

    def test_a_changed_etag_restarts_the_file(self, dwh, raw_event_store):
        key = upload_events(raw_event_store, "file.jsonl.gz", [event("2024-01-08 10:00:00", ehr_id="E1")])
        load_event_file(dwh, raw_event_store, key)
        replacement = [event("2024-01-08 11:00:00", ehr_id="E2"), event("2024-01-08 12:00:00", ehr_id="E3")]
        upload_events(raw_event_store, "file.jsonl.gz", replacement)
        rerun = load_event_file(dwh, raw_event_store, key)
        assert (rerun.started_after, rerun.records, rerun.changeable.inserted) == (-1, 2, 2)


def test_a_column_added_to_the_mapping_appears_on_the_next_run(tmp_path, raw_event_store, new_dwh):
    path = tmp_path / "field_mappings.yaml"
    path.write_text(
        DEFAULT_MAPPINGS.read_text(encoding="utf-8").replace(
            "changeable:\n", "changeable:\n  favourite_colour: {type: str}\n", 1
        ),
        encoding="utf-8",
    )
    plain = new_dwh()
    extended = new_dwh(path, schema=plain.db_schema, create=False)
    assert extended.ensure_schema() == ["changeble_user_properties.favourite_colour"]
    load(extended, raw_event_store, [event("2024-01-08 10:00:00", ehr_id="E1", favourite_colour="green")])
    assert only_row(extended, "changeable")["favourite_colour"] == "green"


def _clean_load(
    store: RawEventStore, tmp_path: Path, events: list[dict[str, Any]], new_dwh: NewDWH
) -> DWHRepository:
    """The same events loaded in one uninterrupted run into a schema of their own."""
    name = f"reference-{len(events)}"
    reference = new_dwh(write_mappings(tmp_path / f"{name}.yaml", ["favourite_colour"]))
    key = upload_events(store, f"{name}.jsonl.gz", events)
    load_event_file(reference, store, key, batch_size=100_000)
    return reference


def hold_load_lock(dwh: DWHRepository, key: str, seconds: float) -> threading.Thread:
    """Another run's lock on ``key``, held for ``seconds`` on a thread."""
    held = threading.Event()

    def hold() -> None:
        with dwh.file_load_lock(key, wait_seconds=0) as acquired:
            assert acquired
            held.set()
            time.sleep(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    return holder


@pytest.mark.timeout(60)
def test_a_file_another_run_is_loading_is_loaded_once_that_run_is_done(dwh, raw_event_store):
    key = upload_events(raw_event_store, "file.jsonl.gz", [event("2024-01-08 10:00:00", ehr_id="E1")])
    holder = hold_load_lock(dwh, key, seconds=2)
    started = time.monotonic()
    result = load_event_file(dwh, raw_event_store, key, lock_wait_seconds=30)
    holder.join()
    assert time.monotonic() - started >= 1.5
    assert result.records == 1


@pytest.mark.timeout(60)
def test_a_file_another_run_keeps_loading_is_refused_after_the_wait(dwh, raw_event_store):
    key = upload_events(raw_event_store, "file.jsonl.gz", [event("2024-01-08 10:00:00", ehr_id="E1")])
    holder = hold_load_lock(dwh, key, seconds=5)
    with pytest.raises(FileLoadInProgressError, match="another run is loading"):
        load_event_file(dwh, raw_event_store, key, lock_wait_seconds=1)
    holder.join()
    assert rows(dwh, "changeable") == []
    assert load_event_file(dwh, raw_event_store, key).records == 1


def test_a_truncated_object_fails_after_its_last_whole_line_and_keeps_the_lines_before(dwh, raw_event_store):
    events = [event(f"2024-01-08 {i // 60:02d}:{i % 60:02d}:00", ehr_id=f"E{i}") for i in range(200)]
    body = gzip.compress(b"".join(orjson.dumps(item) + b"\n" for item in events))
    key = f"{raw_event_store.prefix}/truncated.jsonl.gz"
    raw_event_store.client.put_object(Bucket=raw_event_store.bucket, Key=key, Body=body[: len(body) // 2])

    with pytest.raises(EventFileLoadError, match="could not read the object") as failure:
        load_event_file(dwh, raw_event_store, key)
    loaded = failure.value.metadata["last_successful_line"] + 1
    assert 0 < loaded < 200
    assert failure.value.metadata["failed_line"] == loaded
    assert failure.value.retryable is False
    assert len(rows(dwh, "changeable")) == loaded


def put_lines(store: RawEventStore, name: str, lines: list[bytes]) -> str:
    key = f"{store.prefix}/{name}"
    body = gzip.compress(b"".join(line + b"\n" for line in lines))
    store.client.put_object(Bucket=store.bucket, Key=key, Body=body)
    return key


class TestLinesAndBatches:
    def test_blank_lines_are_skipped_and_counted(self, dwh, raw_event_store):
        lines = [orjson.dumps(item) for item in numbered_events(3)]
        key = put_lines(raw_event_store, "file.jsonl.gz", [lines[0], b"", lines[1], b"  \t", lines[2]])
        result = load_event_file(dwh, raw_event_store, key)
        assert (result.records, result.blank_lines, result.last_successful_line) == (3, 2, 4)
        assert len(rows(dwh, "changeable")) == 3

    def test_a_malformed_json_line_stops_the_load_at_its_line(self, dwh, raw_event_store):
        lines = [orjson.dumps(item) for item in numbered_events(6)]
        lines[4] = b'{"uuid": "0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01", "event_time": '
        key = put_lines(raw_event_store, "file.jsonl.gz", lines)
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=3)
        assert (failure.value.failed_line, failure.value.result.last_successful_line) == (4, 3)
        assert failure.value.error_message.startswith("malformed JSON line: ")
        assert "at character" in failure.value.error_message
        assert failure.value.retryable is False
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {f"E{i}" for i in range(4)}
        assert dwh.get_checkpoint(key).last_successful_line == 3

    def test_an_empty_object_is_loaded_and_finished(self, dwh, raw_event_store):
        key = put_lines(raw_event_store, "empty.jsonl.gz", [])
        result = load_event_file(dwh, raw_event_store, key)
        checkpoint = dwh.get_checkpoint(key)
        assert (result.records, result.last_successful_line) == (0, -1)
        assert (checkpoint.last_successful_line, checkpoint.finished) == (-1, True)

    def test_every_batch_size_lines_commit_together(self, dwh, raw_event_store):
        key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(10))
        result = load_event_file(dwh, raw_event_store, key, batch_size=4)
        checkpoint = dwh.get_checkpoint(key)
        assert (result.records, result.batches, result.last_successful_line) == (10, 3, 9)
        assert (checkpoint.last_successful_line, checkpoint.finished) == (9, True)


def test_a_read_that_breaks_mid_object_stops_at_the_next_line_and_may_be_retried(
    dwh, raw_event_store, monkeypatch
):
    # One gzip member a line, so that the bytes before the break hold exactly lines 0-2.
    members = [gzip.compress(orjson.dumps(item) + b"\n") for item in numbered_events(6)]
    key = f"{raw_event_store.prefix}/file.jsonl.gz"
    raw_event_store.client.put_object(Bucket=raw_event_store.bucket, Key=key, Body=b"".join(members))
    open_object = RawEventStore.open_object
    intact = sum(map(len, members[:3]))

    class Breaking:
        def __init__(self, body: Any) -> None:
            self.body, self.given = body, 0

        def read(self, size: int) -> bytes:
            if self.given >= intact:
                raise OSError("connection reset by peer")
            data = self.body.read(min(size, intact - self.given))
            self.given += len(data)
            return data

    @contextmanager
    def breaking_after_three_lines(self, key, log=None):
        with open_object(self, key, log) as (stored, body):
            yield stored, Breaking(body)

    monkeypatch.setattr(RawEventStore, "open_object", breaking_after_three_lines)
    with pytest.raises(EventFileLoadError, match="connection reset by peer") as failure:
        load_event_file(dwh, raw_event_store, key, batch_size=2)
    assert (failure.value.metadata["failed_line"], failure.value.metadata["last_successful_line"]) == (3, 2)
    assert failure.value.retryable is True
    assert dwh.get_checkpoint(key).last_successful_line == 2


def test_an_object_that_is_not_gzip_fails_at_line_0_for_good(dwh, raw_event_store):
    key = f"{raw_event_store.prefix}/plain.jsonl.gz"
    raw_event_store.client.put_object(
        Bucket=raw_event_store.bucket, Key=key, Body=orjson.dumps(numbered_events(1)[0]) + b"\n"
    )
    with pytest.raises(EventFileLoadError, match="could not read the object") as failure:
        load_event_file(dwh, raw_event_store, key)
    assert (failure.value.metadata["failed_line"], failure.value.metadata["last_successful_line"]) == (0, -1)
    assert failure.value.retryable is False
    assert rows(dwh, "changeable") == []


def numbered_events(count: int) -> list[dict[str, Any]]:
    return [
        event(f"2024-01-08 10:{i // 60:02d}:{i % 60:02d}", ehr_id=f"E{i}", amplitude_id=100 + i)
        for i in range(count)
    ]


LINES = 30_000


class TestTheLineWorker:
    """The lines are read in a process of their own (load/line_worker.py): when it dies, the load
    stops after what it had read, retryable, and a rerun resumes there."""

    @pytest.mark.timeout(120)
    def test_a_killed_worker_stops_the_load_after_its_records_and_a_rerun_loads_the_rest(
        self, dwh, raw_event_store, monkeypatch
    ):
        # More chunks than the pipe between the two processes holds: the worker is still at work.
        start = datetime(2024, 1, 8)
        events = [
            event(f"{start + timedelta(seconds=i):%Y-%m-%d %H:%M:%S}", ehr_id=f"E{i}", amplitude_id=100 + i)
            for i in range(LINES)
        ]
        key = upload_events(raw_event_store, "file.jsonl.gz", events)
        real_write_batch = DWHRepository.write_batch
        writes: list[int] = []

        def write_batch_killing_the_worker_at_the_second(self: DWHRepository, conn: Any, batch: Any) -> Any:
            writes.append(batch.records)
            if len(writes) == 2:
                for pid in line_worker_pids():
                    os.kill(pid, signal.SIGKILL)
            return real_write_batch(self, conn, batch)

        monkeypatch.setattr(DWHRepository, "write_batch", write_batch_killing_the_worker_at_the_second)
        monkeypatch.setattr(event_files, "LINE_WORKER_MIN_BYTES", 0)  # a small object is read in-process
        with pytest.raises(
            EventFileLoadError, match=r"the line worker stopped \(killed by signal 9\)"
        ) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=200)

        stopped = failure.value
        assert stopped.retryable is True
        assert 400 <= stopped.failed_line < LINES
        assert stopped.metadata["last_successful_line"] == stopped.failed_line - 1
        checkpoint = dwh.get_checkpoint(key)
        assert (checkpoint.last_successful_line, checkpoint.finished) == (stopped.failed_line - 1, False)
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {
            f"E{i}" for i in range(stopped.failed_line)
        }

        monkeypatch.setattr(DWHRepository, "write_batch", real_write_batch)
        rerun = load_event_file(dwh, raw_event_store, key, batch_size=200)
        assert (rerun.started_after, rerun.records_before + rerun.records) == (stopped.failed_line - 1, LINES)
        assert {row["ehr_id"] for row in rows(dwh, "permanent")} == {f"E{i}" for i in range(LINES)}
        assert list(line_worker_pids()) == []


class TestNoLineIsLostSilently:
    """Issue 9, item 1: a failure on the batch-committer thread must fail the load, never hang it."""

    @pytest.mark.timeout(60)
    def test_an_amplitude_id_beyond_bigint_stops_at_its_line(self, dwh, raw_event_store):
        events = numbered_events(10)
        events[5]["amplitude_id"] = 2**63
        key = upload_events(raw_event_store, "file.jsonl.gz", events)

        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=2)

        assert (failure.value.failed_line, failure.value.result.last_successful_line) == (5, 4)
        assert "amplitude_id" in failure.value.error_message
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {f"E{i}" for i in range(5)}
        assert dwh.get_checkpoint(key).last_successful_line == 4

    @pytest.mark.timeout(60)
    @pytest.mark.parametrize(
        "error",
        [psycopg.errors.InsufficientPrivilege("permission denied"), RuntimeError("a bug in the writer")],
        ids=["psycopg-error", "any-exception"],
    )
    def test_a_commit_that_raises_fails_the_load_after_the_batches_before_it(
        self, dwh, raw_event_store, monkeypatch, error
    ):
        key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(10))
        fail_a_batch_write(monkeypatch, error)

        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=2)

        assert failure.value.metadata["failed_line"] == 2
        assert failure.value.metadata["last_successful_line"] == 1
        assert str(error) in failure.value.error_message
        assert failure.value.retryable is isinstance(error, psycopg.Error)
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {"E0", "E1"}
        checkpoint = dwh.get_checkpoint(key)
        assert (checkpoint.last_successful_line, checkpoint.finished) == (1, False)


class TestBadRecordsStopAtTheirLine:
    """Issue 9, items 2 and 3: whatever refuses a record, the lines before it are committed and
    the failure names its line."""

    @pytest.mark.timeout(60)
    def test_an_event_time_out_of_range_in_utc(self, dwh, raw_event_store):
        events = numbered_events(10)
        events[5]["event_time"] = "0001-01-01T00:00:00+01:00"
        key = upload_events(raw_event_store, "file.jsonl.gz", events)
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=4)
        assert (failure.value.failed_line, failure.value.result.last_successful_line) == (5, 4)
        assert "event_time" in failure.value.error_message
        assert len(rows(dwh, "changeable")) == 5

    @pytest.mark.timeout(60)
    def test_an_ehr_id_too_long_for_the_index(self, dwh, raw_event_store):
        events = numbered_events(10)
        events[5]["user_properties"]["ehr_id"] = os.urandom(1500).hex()
        key = upload_events(raw_event_store, "file.jsonl.gz", events)
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key)
        assert (failure.value.failed_line, failure.value.result.last_successful_line) == (5, 4)
        assert "ehr_id" in failure.value.error_message
        assert len(failure.value.error_message) < 600
        assert len(rows(dwh, "permanent")) == 5

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("batch_size", [4, 100_000])
    def test_a_record_the_database_refuses_is_found_and_the_lines_before_it_commit(
        self, dwh, raw_event_store, batch_size
    ):
        events = numbered_events(12)
        events[6]["user_properties"]["city"] = "Атлантида"
        forbid_city(dwh, "Атлантида")
        key = upload_events(raw_event_store, "file.jsonl.gz", events)

        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=batch_size)

        assert (failure.value.failed_line, failure.value.result.last_successful_line) == (6, 5)
        assert (failure.value.result.records, failure.value.result.batches) == (
            6,
            2 if batch_size == 4 else 1,
        )
        assert failure.value.retryable is False
        assert "city_allowed" in failure.value.error_message
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {f"E{i}" for i in range(6)}
        assert {row["ehr_id"] for row in rows(dwh, "permanent")} == {f"E{i}" for i in range(6)}
        assert dwh.get_checkpoint(key).last_successful_line == 5

    @pytest.mark.timeout(60)
    def test_lines_without_identity_before_the_refused_one_are_counted_once_each(self, dwh, raw_event_store):
        events = numbered_events(12)
        for anonymous in (events[2], events[7]):
            anonymous["amplitude_id"] = None
            del anonymous["user_properties"]["ehr_id"]
        events[9]["user_properties"]["city"] = "Атлантида"
        forbid_city(dwh, "Атлантида")
        key = upload_events(raw_event_store, "file.jsonl.gz", events)

        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key)

        result = failure.value.result
        assert (failure.value.failed_line, result.last_successful_line) == (9, 8)
        assert (result.records, result.skipped_without_identity) == (9, 2)
        assert (result.permanent.inserted, result.changeable.inserted) == (7, 7)
        assert len(rows(dwh, "changeable")) == 7

    @pytest.mark.timeout(60)
    def test_a_batch_refused_whole_then_accepted_in_parts_commits_it_and_asks_for_a_rerun(
        self, dwh, raw_event_store, monkeypatch
    ):
        key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(10))
        fail_a_batch_write(monkeypatch, psycopg.errors.CheckViolation("a constraint that held for a moment"))
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=4)

        assert failure.value.metadata["failed_line"] == 8
        assert failure.value.metadata["last_successful_line"] == 7
        assert failure.value.retryable is True
        assert "accepted them in parts; run again" in failure.value.error_message
        assert (failure.value.result.records, failure.value.result.batches) == (8, 2)
        assert dwh.get_checkpoint(key).last_successful_line == 7
        assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {f"E{i}" for i in range(8)}

        monkeypatch.undo()
        rerun = load_event_file(dwh, raw_event_store, key, batch_size=4)
        assert (rerun.started_after, rerun.records) == (7, 2)

    @pytest.mark.timeout(60)
    def test_an_object_replaced_while_a_refused_batch_is_searched_stops_before_that_batch(
        self, dwh, raw_event_store, monkeypatch
    ):
        key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(10))
        fail_a_batch_write(
            monkeypatch,
            psycopg.errors.CheckViolation("refused"),
            before_raising=lambda: upload_events(raw_event_store, "file.jsonl.gz", numbered_events(3)),
        )
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=4)

        assert failure.value.metadata["failed_line"] == 4
        assert failure.value.metadata["last_successful_line"] == 3
        assert failure.value.retryable is True
        assert "the object was replaced while it was loaded" in failure.value.error_message
        assert dwh.get_checkpoint(key).last_successful_line == 3

    @pytest.mark.timeout(60)
    def test_an_object_that_stops_reading_while_a_refused_batch_is_searched_stops_before_that_batch(
        self, dwh, raw_event_store, monkeypatch
    ):
        """The search reads the refused batch's lines again; a read that fails there stops the load
        as any read failure does (said on the checkpoint, retryable), not with a stray exception."""
        key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(10))
        real_open_lines = RawEventStore.open_lines

        @contextmanager
        def lines_cut_after_line_5(store, opened_key, log=None):
            with real_open_lines(store, opened_key, log) as (stored, lines):

                def cut():
                    for line_index, line in enumerate(lines):
                        if line_index == 6:
                            raise ConnectionResetError("connection reset by peer")
                        yield line

                yield stored, cut()

        monkeypatch.setattr(RawEventStore, "open_lines", lines_cut_after_line_5)
        fail_a_batch_write(monkeypatch, psycopg.errors.CheckViolation("refused"))
        with pytest.raises(EventFileLoadError) as failure:
            load_event_file(dwh, raw_event_store, key, batch_size=4)

        assert failure.value.metadata["failed_line"] == 4
        assert failure.value.metadata["last_successful_line"] == 3
        assert failure.value.retryable is True
        assert "could not read the object" in failure.value.error_message
        assert "connection reset by peer" in failure.value.error_message
        assert dwh.get_checkpoint(key).last_successful_line == 3
        checkpoints = dwh.tables.checkpoints
        with dwh.engine.connect() as conn:
            said = conn.execute(
                select(checkpoints.c.last_error).where(checkpoints.c.file_key == key)
            ).scalar_one()
        assert "could not read the object" in said


def unopenable_store(store: RawEventStore) -> RawEventStore:
    """``store``'s objects behind an S3 that answers every GET with SlowDown, beyond botocore's retries."""
    real_client = store.client

    class Unavailable:
        def __getattr__(self, name):
            return getattr(real_client, name)

        def get_object(self, **request):
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Reduce your request rate"}}, "GetObject"
            )

    return RawEventStore(store.bucket, store.prefix, Unavailable())


@pytest.mark.parametrize(
    ("lines_loaded_before", "failed_line"), [(0, 0), (3, 3)], ids=["no-checkpoint", "after-the-checkpoint"]
)
def test_an_object_s3_will_not_open_stops_where_the_load_would_have_started(
    dwh, raw_event_store, monkeypatch, lines_loaded_before, failed_line
):
    key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(3))
    if lines_loaded_before:
        load_event_file(dwh, raw_event_store, key)
    with pytest.raises(EventFileLoadError) as failure:
        load_event_file(dwh, unopenable_store(raw_event_store), key)
    assert (failure.value.metadata["failed_line"], failure.value.metadata["last_successful_line"]) == (
        failed_line,
        failed_line - 1,
    )
    assert failure.value.retryable is True


def test_an_object_that_is_gone_raises_s3s_own_error_for_the_caller_to_skip(dwh, raw_event_store):
    with pytest.raises(ClientError) as raised:
        load_event_file(dwh, raw_event_store, f"{raw_event_store.prefix}/deleted.jsonl.gz")
    assert is_missing_object_error(raised.value)
    assert dwh.get_checkpoint(f"{raw_event_store.prefix}/deleted.jsonl.gz") is None


def test_an_object_s3_will_not_open_stops_with_the_load_metadata_and_may_be_retried(
    dwh, raw_event_store, monkeypatch
):
    key = upload_events(raw_event_store, "file.jsonl.gz", numbered_events(3))
    load_event_file(dwh, raw_event_store, key, start_after=-1, batch_size=1)
    with pytest.raises(EventFileLoadError) as failure:
        load_event_file(dwh, unopenable_store(raw_event_store), key, start_after=0)
    assert failure.value.metadata == {
        "file_key": key,
        "failed_line": 1,
        "last_successful_line": 0,
        "error_message": failure.value.error_message,
    }
    assert "SlowDown" in failure.value.error_message
    assert failure.value.retryable
