"""``user_properties_tables``: the two DWH tables from a week's object (CONTRACT §6, §7)."""

from datetime import date
from typing import Any

import orjson
import pytest
from dagster import ExecuteInProcessResult, TableSchema, materialize
from sqlalchemy import select

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.checks import user_properties_keys_known
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    WEEK,
    amplitude_resource,
    failure_metadata,
    materializations,
    simulator,
)
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.support import pipeline_resources
from amplitude_simulator import expected_week_lines

pytestmark = pytest.mark.integration

TABLES = {PERMANENT_TABLE, CHANGEABLE_TABLE}


def load_tables(
    store: RawEventStore, dwh: DWHRepository, run_config: dict[str, Any] | None = None
) -> ExecuteInProcessResult:
    """Materialize only the two tables (the week's object must exist)."""
    return materialize(
        [user_properties_tables],
        partition_key=WEEK,
        resources=pipeline_resources(store=store, dwh=dwh),
        run_config=run_config,
        raise_on_error=False,
    )


def start_after(line: int) -> dict[str, Any]:
    return {"ops": {"user_properties_tables": {"config": {"start_after": line}}}}


def expected_row_counts() -> tuple[int, int]:
    """(permanent, changeable) rows the simulator's week yields: one per ehr_id, else per amplitude_id."""
    records = [orjson.loads(line) for line in expected_week_lines(SMALL_WEEK, date.fromisoformat(WEEK))]
    ehr_ids = {r["user_properties"]["ehr_id"] for r in records if r["user_properties"].get("ehr_id")}
    anonymous = {
        r["amplitude_id"]
        for r in records
        if not r["user_properties"].get("ehr_id") and r["amplitude_id"] is not None
    }
    return len(ehr_ids), len(ehr_ids) + len(anonymous)


def ehr_ids(dwh: DWHRepository, table_name: str) -> list[str]:
    table = getattr(dwh.tables, table_name)
    with dwh.engine.connect() as conn:
        return sorted(conn.execute(select(table.c.ehr_id)).scalars())


def test_a_simulator_week_builds_both_tables_and_a_rerun_changes_nothing(raw_event_store, dwh):
    lines = len(expected_week_lines(SMALL_WEEK, date.fromisoformat(WEEK)))
    permanent_rows, changeable_rows = expected_row_counts()
    with simulator(SMALL_WEEK) as sim:
        first = materialize(
            [amplitude_events, user_properties_tables, user_properties_keys_known],
            partition_key=WEEK,
            resources=pipeline_resources(store=raw_event_store, dwh=dwh, amplitude=amplitude_resource(sim)),
        )

    assert first.success
    assert [evaluation.passed for evaluation in first.get_asset_check_evaluations()] == [True]
    found = materializations(first)
    assert set(found) == {"amplitude_events", *TABLES}
    assert {event.partition for event in first.get_asset_materialization_events()} == {WEEK}
    for table, rows in ((PERMANENT_TABLE, permanent_rows), (CHANGEABLE_TABLE, changeable_rows)):
        metadata = found[table]
        assert metadata["file_key"] == raw_event_store.week_key(WEEK)
        assert metadata["records_read"] == lines
        assert metadata["already_loaded"] is False
        assert (metadata["started_after_line"], metadata["last_successful_line"]) == (-1, lines - 1)
        # One batch reduced to one candidate per user: every candidate is a new row.
        assert (metadata["inserted"], metadata["updated"], metadata["unchanged"]) == (rows, 0, 0)
        assert metadata["dagster/row_count"] == rows
        schema = metadata["dagster/column_schema"]
        assert isinstance(schema, TableSchema)
        columns = {column.name for column in schema.columns}
        assert {"ehr_id", "uuid", "event_time", "loaded_at"} <= columns
    permanent_columns = {c.name for c in found[PERMANENT_TABLE]["dagster/column_schema"].columns}
    changeable_columns = {c.name for c in found[CHANGEABLE_TABLE]["dagster/column_schema"].columns}
    assert {"gender", "birth_date"} <= permanent_columns
    assert {"amplitude_id", "age", "is_premium"} <= changeable_columns

    rerun = load_tables(raw_event_store, dwh)

    assert rerun.success
    again = materializations(rerun)
    assert set(again) == TABLES
    for table in TABLES:
        assert again[table]["already_loaded"] is True
        assert (again[table]["records_read"], again[table]["inserted"], again[table]["updated"]) == (0, 0, 0)
        assert again[table]["dagster/row_count"] == found[table]["dagster/row_count"]


def test_the_tables_fail_clearly_when_the_week_was_not_exported(raw_event_store, dwh):
    result = load_tables(raw_event_store, dwh)

    assert not result.success
    metadata = failure_metadata(result)
    assert metadata.pop("processing_duration_seconds") >= 0
    assert metadata == {
        "file_key": raw_event_store.week_key(WEEK),
        "processed_records_total": 0,
        "errors_total": 1,
        "interrupted_count": 1,
    }
    assert result.get_asset_materialization_events() == []


def test_an_unknown_key_at_line_five_stops_the_run_and_start_after_skips_it(raw_event_store, dwh):
    week = [event(f"2024-01-08 {9 + i:02d}:00:00", ehr_id=f"E{i}") for i in range(8)]
    week[5]["user_properties"]["mystery_key"] = "?"
    key = upload_events(raw_event_store, f"{WEEK}.jsonl.gz", week)
    assert key == raw_event_store.week_key(WEEK)

    failed = load_tables(raw_event_store, dwh)

    assert not failed.success
    metadata = failure_metadata(failed)
    assert (metadata["file_key"], metadata["failed_line"], metadata["last_successful_line"]) == (key, 5, 4)
    assert "mystery_key" in metadata["error_message"]
    assert metadata["records_loaded_this_run"] == 5
    assert failed.get_asset_materialization_events() == []
    assert ehr_ids(dwh, "permanent") == ["E0", "E1", "E2", "E3", "E4"]

    # Without an override the checkpoint resumes at the bad line again.
    again = load_tables(raw_event_store, dwh)
    assert not again.success
    assert failure_metadata(again)["failed_line"] == 5

    resumed = load_tables(raw_event_store, dwh, run_config=start_after(5))

    assert resumed.success
    found = materializations(resumed)
    assert set(found) == TABLES
    for table in TABLES:
        metadata = found[table]
        assert (metadata["started_after_line"], metadata["last_successful_line"]) == (5, 7)
        assert (metadata["records_read"], metadata["inserted"]) == (2, 2)
        assert metadata["dagster/row_count"] == 7
    assert ehr_ids(dwh, "permanent") == ["E0", "E1", "E2", "E3", "E4", "E6", "E7"]


def test_start_after_minus_one_with_a_small_batch_size_reloads_the_whole_file_idempotently(
    raw_event_store, dwh
):
    week = [event(f"2024-01-08 {9 + i:02d}:00:00", ehr_id=f"E{i % 3}") for i in range(6)]
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", week)
    assert load_tables(raw_event_store, dwh).success

    config = {"ops": {"user_properties_tables": {"config": {"start_after": -1, "batch_size": 2}}}}
    result = load_tables(raw_event_store, dwh, run_config=config)

    assert result.success
    for metadata in materializations(result).values():
        assert (metadata["already_loaded"], metadata["records_read"]) == (False, 6)
        assert (metadata["inserted"], metadata["updated"], metadata["dagster/row_count"]) == (0, 0, 3)
