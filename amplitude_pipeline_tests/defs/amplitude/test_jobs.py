"""``export_amplitude_range``: a date range into ``{directory}/{first day}.jsonl.gz`` (CONTRACT §3, §4)."""

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    DagsterInstance,
    DagsterInvalidConfigError,
    ExecuteInProcessResult,
    instance_for_test,
    materialize,
)

from amplitude_pipeline.amplitude.export import latest_exportable_day
from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.jobs import (
    ExportAmplitudeRangeConfig,
    default_range_directory,
    export_amplitude_range,
    export_amplitude_range_op,
)
from amplitude_pipeline.storage.s3 import RawEventStore, s3_client
from amplitude_pipeline_tests.defs.support import (
    SIM_API_KEY,
    SIM_SECRET_KEY,
    SMALL_WEEK,
    amplitude_resource,
    failure_metadata,
    joined_lines,
    materializations,
    object_bytes,
    object_lines_bytes,
    simulator,
    unused_amplitude_resource,
    values,
)
from amplitude_simulator import Fault, SimulatorConfig, SimulatorServer, expected_lines, expected_week_lines

defs = load_code_location()

OP = "export_amplitude_range"
WEDNESDAY = date(2024, 1, 10)
NEXT_TUESDAY = date(2024, 1, 16)
FRIDAY = date(2024, 1, 12)


def range_config(start: str, end: str, directory: str) -> dict[str, Any]:
    return {"ops": {OP: {"config": {"start_date": start, "end_date": end, "directory": directory}}}}


def run_range(
    store: RawEventStore,
    sim: SimulatorServer,
    start: str,
    end: str,
    directory: str,
    instance: DagsterInstance | None = None,
    **settings: Any,
) -> ExecuteInProcessResult:
    return export_amplitude_range.execute_in_process(
        run_config=range_config(start, end, directory),
        resources={"amplitude": amplitude_resource(sim, **settings), "raw_event_store": store},
        instance=instance,
        raise_on_error=False,
    )


def unused_store() -> RawEventStore:
    """For runs refused before they touch S3."""
    return RawEventStore("unused", client=s3_client("http://127.0.0.1:9"))


def keys_under(store: RawEventStore, directory: str) -> list[str]:
    listing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=f"{directory}/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def days_lines(config: SimulatorConfig, first: date, last: date) -> bytes:
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return joined_lines([line for day in days for line in expected_lines(config, day)])


def output_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    outputs = [event for event in result.all_events if event.is_successful_output]
    assert len(outputs) == 1
    return values(dict(outputs[0].step_output_data.metadata))


def failure_message(result: ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert len(failures) == 1
    user_failure = failures[0].step_failure_data.user_failure_data
    assert user_failure is not None, failures[0].step_failure_data.error
    return user_failure.description or ""


@pytest.mark.integration
def test_a_monday_aligned_range_writes_the_weekly_partitions_objects_byte_for_byte(raw_event_store):
    weeks = ["2024-01-08", "2024-01-15"]
    with simulator(SMALL_WEEK) as sim:
        result = run_range(raw_event_store, sim, "2024-01-08", "2024-01-21", raw_event_store.prefix)
        assert result.success
        week_keys = [raw_event_store.week_key(week) for week in weeks]
        assert keys_under(raw_event_store, raw_event_store.prefix) == week_keys
        from_job = {key: object_bytes(raw_event_store, key) for key in week_keys}

        # The asset, for the same weeks, writes the same keys; its bytes are the job's bytes.
        for week in weeks:
            materialized = materialize(
                [amplitude_events],
                partition_key=week,
                resources={"amplitude": amplitude_resource(sim), "raw_event_store": raw_event_store},
            )
            asset_metadata = materializations(materialized)["amplitude_events"]
            job_row = next(row for row in result.output_for_node(OP) if row["first_day"] == week)
            assert asset_metadata["s3_key"] == job_row["s3_key"]
            assert (asset_metadata["events"], asset_metadata["bytes"]) == (
                job_row["events"],
                job_row["bytes"],
            )
            assert asset_metadata["etag"] == job_row["etag"]
    assert keys_under(raw_event_store, raw_event_store.prefix) == week_keys
    for key, week in zip(week_keys, weeks, strict=True):
        assert object_bytes(raw_event_store, key) == from_job[key]
        assert object_lines_bytes(raw_event_store, key) == joined_lines(
            expected_week_lines(SMALL_WEEK, date.fromisoformat(week))
        )


@pytest.mark.integration
def test_a_range_from_wednesday_to_tuesday_is_two_objects_named_after_their_first_days(raw_event_store):
    config = replace(SMALL_WEEK, empty_days={FRIDAY})
    directory = f"{raw_event_store.prefix}/ranges"
    with simulator(config) as sim, instance_for_test() as instance:
        # Surrounding spaces and slashes are dropped from the directory.
        result = run_range(raw_event_store, sim, "2024-01-10", "2024-01-16", f" /{directory}/ ", instance)
        requests = sim.requests
        progress = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.user_message.startswith(("1/2 ", "2/2 "))
        ]

    assert result.success
    first_key, second_key = f"{directory}/2024-01-10.jsonl.gz", f"{directory}/2024-01-15.jsonl.gz"
    assert keys_under(raw_event_store, directory) == [first_key, second_key]
    assert object_lines_bytes(raw_event_store, first_key) == days_lines(config, WEDNESDAY, date(2024, 1, 14))
    assert object_lines_bytes(raw_event_store, second_key) == days_lines(
        config, date(2024, 1, 15), NEXT_TUESDAY
    )
    days = [WEDNESDAY + timedelta(days=n) for n in range(7)]
    assert [(r.start, r.end) for r in requests] == [(f"{d:%Y%m%d}T00", f"{d:%Y%m%d}T23") for d in days]
    assert [r.status for r in requests] == [404 if d == FRIDAY else 200 for d in days]

    rows = result.output_for_node(OP)
    assert [(row["s3_key"], row["first_day"], row["last_day"], row["empty_days"]) for row in rows] == [
        (first_key, "2024-01-10", "2024-01-14", ["2024-01-12"]),
        (second_key, "2024-01-15", "2024-01-16", []),
    ]
    for row in rows:
        stored = raw_event_store.stat(row["s3_key"])
        assert stored is not None
        assert (row["bytes"], row["etag"]) == (stored.size, stored.etag)
        assert row["s3_uri"] == f"s3://{raw_event_store.bucket}/{row['s3_key']}"
    assert rows[0]["events"] == 4 * config.events_per_day  # Friday is empty
    assert rows[1]["events"] == 2 * config.events_per_day

    summary = output_metadata(result)
    assert summary["object_count"] == 2
    assert summary["events"] == rows[0]["events"] + rows[1]["events"]
    assert summary["bytes"] == rows[0]["bytes"] + rows[1]["bytes"]
    assert summary["empty_days"] == ["2024-01-12"]
    assert summary["api_requests"] == 7
    assert (summary["first_day"], summary["last_day"]) == ("2024-01-10", "2024-01-16")
    assert summary["directory_uri"] == f"s3://{raw_event_store.bucket}/{directory}/"
    table = summary["objects"]
    assert [record.data["s3_key"] for record in table.records] == [first_key, second_key]
    assert [record.data["empty_days"] for record in table.records] == ["2024-01-12", ""]

    assert progress == [
        f"1/2 2024-01-10..2024-01-14: {rows[0]['events']} events, {rows[0]['bytes']} bytes, "
        f"empty days: 2024-01-12 -> {rows[0]['s3_uri']} ({rows[0]['duration_seconds']:.1f} s)",
        f"2/2 2024-01-15..2024-01-16: {rows[1]['events']} events, {rows[1]['bytes']} bytes, "
        f"empty days: none -> {rows[1]['s3_uri']} ({rows[1]['duration_seconds']:.1f} s)",
    ]


@pytest.mark.integration
def test_a_rerun_replaces_existing_objects_whole(raw_event_store):
    directory = f"{raw_event_store.prefix}/rerun"
    key = f"{directory}/2024-01-10.jsonl.gz"
    first, second = (
        replace(SMALL_WEEK, seed=1, events_per_day=60),
        replace(SMALL_WEEK, seed=2, events_per_day=5),
    )
    for config in (first, second):
        with simulator(config) as sim:
            assert run_range(raw_event_store, sim, "2024-01-10", "2024-01-11", directory).success
    assert keys_under(raw_event_store, directory) == [key]
    assert object_lines_bytes(raw_event_store, key) == days_lines(second, WEDNESDAY, date(2024, 1, 11))


@pytest.mark.integration
def test_a_failing_piece_fails_the_run_after_the_earlier_pieces_are_written_whole(raw_event_store):
    directory = f"{raw_event_store.prefix}/failing"
    with simulator(SMALL_WEEK) as sim:
        # The first piece's five days are served; the sixth day's request fails on every attempt.
        sim.add_faults(Fault.slow(0, count=5), Fault.server_error(503, count=3))
        result = run_range(raw_event_store, sim, "2024-01-10", "2024-01-16", directory, max_attempts=3)
        statuses = [r.status for r in sim.requests]

    assert not result.success
    assert statuses == [200] * 5 + [503] * 3
    first_key, failed_key = f"{directory}/2024-01-10.jsonl.gz", f"{directory}/2024-01-15.jsonl.gz"
    assert keys_under(raw_event_store, directory) == [first_key]
    assert object_lines_bytes(raw_event_store, first_key) == days_lines(
        SMALL_WEEK, WEDNESDAY, date(2024, 1, 14)
    )
    assert failure_metadata(result) == {
        "first_day": "2024-01-15",
        "last_day": "2024-01-16",
        "s3_key": failed_key,
        "objects_written": [first_key],
    }
    message = failure_message(result)
    assert message.startswith(
        f"2024-01-15..2024-01-16 failed and nothing was written to {failed_key}; the 1 earlier object(s) "
        "are complete. Rerun the job (every piece is exported again) or a range starting 2024-01-15. "
    )
    assert "failed after 3 attempts" in message


TODAY = datetime.now(UTC).date()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("start", "end", "directory", "expected"),
    [
        (
            "2024-01-21",
            "2024-01-08",
            "exports",
            "start_date 2024-01-21 is after end_date 2024-01-08: both days are included, so "
            "start_date must be on or before end_date (swapped?)",
        ),
        (
            "2024-01-08",
            str(TODAY),
            "exports",
            f"end_date {TODAY} cannot be exported yet: Amplitude makes an hour exportable about 2 hours "
            "after it ends, so a UTC day is complete from 03:00 UTC the next day; at ",
        ),
        ("2024-01-08", "2024-01-14", "", "directory '' is empty once spaces and '/' are removed"),
        ("2024-01-08", "2024-01-14", "/", "directory '/' is empty once spaces and '/' are removed"),
        ("2024-01-08", "2024-01-14", "  ", "directory '  ' is empty once spaces and '/' are removed"),
        ("2024-1-8", "2024-01-14", "exports", "start_date '2024-1-8' is not a date in YYYY-MM-DD form"),
        ("2024-01-08", "2024-02-30", "exports", "end_date 2024-02-30 is not a calendar date"),
    ],
)
def test_a_bad_request_fails_before_any_export_request(raw_event_store, start, end, directory, expected):
    with simulator(SMALL_WEEK) as sim:
        result = run_range(raw_event_store, sim, start, end, directory)
        requests = sim.requests

    assert not result.success
    assert requests == []
    message = failure_message(result)
    assert message.startswith(f"export_amplitude_range: {expected}")
    assert keys_under(raw_event_store, raw_event_store.prefix) == []


def test_an_end_date_in_the_future_names_the_latest_day_allowed():
    latest = latest_exportable_day(datetime.now(UTC))
    result = export_amplitude_range.execute_in_process(
        run_config=range_config("2024-01-08", str(latest + timedelta(days=1)), "exports"),
        resources={"amplitude": unused_amplitude_resource(), "raw_event_store": unused_store()},
        raise_on_error=False,
    )
    assert not result.success
    assert f"the latest complete day is {latest}: set end_date on or before it" in failure_message(result)


def test_a_missing_config_entry_is_a_config_error_naming_it():
    with pytest.raises(DagsterInvalidConfigError, match='Missing required config entry "directory"'):
        export_amplitude_range.execute_in_process(
            run_config={"ops": {OP: {"config": {"start_date": "2024-01-08", "end_date": "2024-01-14"}}}},
            resources={"amplitude": unused_amplitude_resource(), "raw_event_store": unused_store()},
        )


def test_the_code_location_has_the_job_with_one_op_of_the_same_name():
    job = defs.resolve_job_def("export_amplitude_range")
    assert [node.name for node in job.nodes] == [OP]
    assert job.nodes[0].definition is export_amplitude_range_op
    assert set(export_amplitude_range_op.required_resource_keys) == {"amplitude", "raw_event_store"}


def test_the_launchpad_opens_with_the_last_finished_week_and_described_fields():
    preset = export_amplitude_range.run_config
    assert preset is not None
    config = preset["ops"][OP]["config"]
    first, last = date.fromisoformat(config["start_date"]), date.fromisoformat(config["end_date"])
    assert (first.weekday(), (last - first).days) == (0, 6)
    assert last <= latest_exportable_day(datetime.now(UTC))
    assert config["directory"] == default_range_directory(os.environ.get("S3_PREFIX") or "amplitude/events")
    ExportAmplitudeRangeConfig(**config)
    schema = export_amplitude_range_op.config_schema.config_type.fields
    assert set(schema) == {"start_date", "end_date", "directory"}
    assert all(schema[name].is_required and schema[name].description for name in schema)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("amplitude/events", "amplitude/ranges"),
        ("/prod/amp/events/", "prod/amp/ranges"),
        ("events", "ranges"),
    ],
)
def test_the_default_directory_sits_beside_the_weekly_objects(prefix, expected):
    assert default_range_directory(prefix) == expected


@pytest.mark.integration
@pytest.mark.slow
def test_dagster_job_execute_runs_the_range_from_a_yaml_file(raw_event_store, tmp_path: Path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # A throwaway instance (SQLite under the test's directory), not the stack's PostgreSQL one.
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    directory = f"{raw_event_store.prefix}/cli"
    range_file = tmp_path / "range.yaml"
    # Unquoted dates, as people write them: Dagster's YAML loader keeps them strings.
    range_file.write_text(
        "ops:\n  export_amplitude_range:\n    config:\n"
        f"      start_date: 2024-01-12\n      end_date: 2024-01-15\n      directory: {directory}/\n",
        encoding="utf-8",
    )
    with simulator(SMALL_WEEK) as sim:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "AMPLITUDE_EXPORT_URL": sim.export_url,
            "AMPLITUDE_API_KEY": SIM_API_KEY,
            "AMPLITUDE_SECRET_KEY": SIM_SECRET_KEY,
        }
        command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "amplitude_pipeline"]
        command += ["-j", "export_amplitude_range", "-c", str(range_file)]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        requests = sim.requests

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert [r.start for r in requests] == ["20240112T00", "20240113T00", "20240114T00", "20240115T00"]
    assert keys_under(raw_event_store, directory) == [
        f"{directory}/2024-01-12.jsonl.gz",
        f"{directory}/2024-01-15.jsonl.gz",
    ]
    assert object_lines_bytes(raw_event_store, f"{directory}/2024-01-12.jsonl.gz") == days_lines(
        SMALL_WEEK, FRIDAY, date(2024, 1, 14)
    )
    assert object_lines_bytes(raw_event_store, f"{directory}/2024-01-15.jsonl.gz") == days_lines(
        SMALL_WEEK, date(2024, 1, 15), date(2024, 1, 15)
    )
    assert "2/2 2024-01-15..2024-01-15" in output
    assert SIM_SECRET_KEY not in output
