"""``load_s3_event_files``: several S3 files in one run, reported per file (CONTRACT §3, §7)."""

import threading
import time
from typing import Any

import pytest
from dagster import Definitions, ExecuteInProcessResult, RunConfig

from amplitude_pipeline.defs.user_properties.jobs import (
    LoadS3EventFilesConfig,
    S3EventFile,
    load_s3_event_files,
    load_s3_event_files_op,
)
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import failure_metadata, values
from amplitude_pipeline_tests.defs.user_properties.support import patients, permanent_ehr_ids
from amplitude_pipeline_tests.load.events import upload_events
from amplitude_pipeline_tests.support import pipeline_resources

pytestmark = pytest.mark.integration


def run_files(
    store: RawEventStore, dwh: DWHRepository, files: list[S3EventFile], **config: Any
) -> ExecuteInProcessResult:
    defs = Definitions(
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=store, dwh=dwh),
    )
    run_config = RunConfig(ops={load_s3_event_files_op.name: LoadS3EventFilesConfig(files=files, **config)})
    return defs.resolve_job_def(load_s3_event_files.name).execute_in_process(
        run_config=run_config, raise_on_error=False
    )


def reported(result: ExecuteInProcessResult) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, file_key, metadata) of the run's materializations, in order."""
    found = []
    for materialization_event in result.get_asset_materialization_events():
        materialization = materialization_event.materialization
        assert materialization_event.partition is None
        metadata = values(dict(materialization.metadata))
        found.append((materialization.asset_key.to_user_string(), metadata["file_key"], metadata))
    return found


def reported_files(result: ExecuteInProcessResult) -> list[tuple[str, str]]:
    return [(table, key) for table, key, _ in reported(result)]


def per_table(*keys: str) -> list[tuple[str, str]]:
    return [(table, key) for key in keys for table in (PERMANENT_TABLE, CHANGEABLE_TABLE)]


@pytest.fixture
def three_files(raw_event_store: RawEventStore) -> list[str]:
    return [
        upload_events(raw_event_store, "2024-01-08.jsonl.gz", patients("2024-01-08", "E1", "E2")),
        upload_events(raw_event_store, "range/2024-01-15.jsonl.gz", patients("2024-01-15", "E2", "E3")),
        upload_events(
            raw_event_store, "187512/187512_2024-01-22_5#0.json.gz", patients("2024-01-22", "E4", "E5", "E6")
        ),
    ]


def test_one_run_loads_every_file_and_reports_each_to_both_tables(raw_event_store, dwh, three_files):
    result = run_files(raw_event_store, dwh, [S3EventFile(key=key) for key in three_files])

    assert result.success
    assert reported_files(result) == per_table(*three_files)
    records = {key: metadata["records_read"] for _, key, metadata in reported(result)}
    assert records == dict(zip(three_files, [2, 2, 3], strict=True))
    inserted = [(table, metadata["inserted"]) for table, _, metadata in reported(result)]
    assert inserted == per_table_values([2, 2], [1, 1], [3, 3])
    assert permanent_ehr_ids(dwh) == ["E1", "E2", "E3", "E4", "E5", "E6"]
    assert all(metadata["already_loaded"] is False for _, _, metadata in reported(result))

    again = run_files(raw_event_store, dwh, [S3EventFile(key=key) for key in three_files])

    assert again.success
    assert reported_files(again) == per_table(*three_files)
    assert all(metadata["already_loaded"] is True for _, _, metadata in reported(again))


def per_table_values(*pairs: list[int]) -> list[tuple[str, int]]:
    return [
        (table, value)
        for permanent, changeable in pairs
        for table, value in ((PERMANENT_TABLE, permanent), (CHANGEABLE_TABLE, changeable))
    ]


def test_a_bad_file_fails_the_run_with_its_position_after_reporting_the_files_before_it(
    raw_event_store, dwh, three_files
):
    bad_lines = patients("2024-01-15", "B0", "B1", "B2", "B3")
    bad_lines[2]["user_properties"]["mystery_key"] = "?"
    bad = upload_events(raw_event_store, "range/2024-01-15.jsonl.gz", bad_lines)
    first, _, last = three_files
    files = [S3EventFile(key=key) for key in (first, bad, last)]

    failed = run_files(raw_event_store, dwh, files)

    assert not failed.success
    metadata = failure_metadata(failed)
    assert (metadata["file_key"], metadata["failed_line"], metadata["last_successful_line"]) == (bad, 2, 1)
    assert "mystery_key" in metadata["error_message"]
    assert reported_files(failed) == per_table(first)
    assert permanent_ehr_ids(dwh) == ["B0", "B1", "E1", "E2"]  # the bad file's lines before line 2

    files[1] = S3EventFile(key=bad, start_after=2)
    resumed = run_files(raw_event_store, dwh, files)

    assert resumed.success
    assert reported_files(resumed) == per_table(first, bad, last)
    by_file = {key: metadata for table, key, metadata in reported(resumed) if table == PERMANENT_TABLE}
    assert by_file[first]["already_loaded"] is True
    assert (by_file[bad]["started_after_line"], by_file[bad]["records_read"]) == (2, 1)
    assert permanent_ehr_ids(dwh) == ["B0", "B1", "B3", "E1", "E2", "E4", "E5", "E6"]


def test_a_file_another_run_is_loading_is_tried_again_after_the_others(raw_event_store, dwh, three_files):
    busy, second, third = three_files
    locked = threading.Event()

    def hold_the_lock_until_the_others_are_loaded() -> None:
        with dwh.file_load_lock(busy, wait_seconds=0) as acquired:
            assert acquired
            locked.set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                checkpoint = dwh.get_checkpoint(third)
                if checkpoint is not None and checkpoint.finished:
                    return
                time.sleep(0.05)

    holder = threading.Thread(target=hold_the_lock_until_the_others_are_loaded)
    holder.start()
    assert locked.wait(10)
    result = run_files(raw_event_store, dwh, [S3EventFile(key=key) for key in three_files])
    holder.join()

    assert result.success
    assert reported_files(result) == per_table(second, third, busy)
    assert permanent_ehr_ids(dwh) == ["E1", "E2", "E3", "E4", "E5", "E6"]


def test_a_file_still_being_loaded_elsewhere_fails_the_run_after_the_others(
    raw_event_store, dwh, three_files
):
    busy, second, third = three_files

    with dwh.file_load_lock(busy, wait_seconds=0) as acquired:
        assert acquired
        result = run_files(
            raw_event_store, dwh, [S3EventFile(key=key) for key in three_files], busy_file_wait_seconds=1
        )

    assert not result.success
    assert failure_metadata(result) == {"file_key": busy}
    assert reported_files(result) == per_table(second, third)
    assert dwh.get_checkpoint(busy) is None


def test_a_file_deleted_since_it_was_listed_is_skipped(raw_event_store, dwh, three_files):
    gone, *rest = three_files
    raw_event_store.client.delete_object(Bucket=raw_event_store.bucket, Key=gone)

    result = run_files(raw_event_store, dwh, [S3EventFile(key=key) for key in three_files])

    assert result.success
    assert reported_files(result) == per_table(*rest)
