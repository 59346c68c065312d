"""The code location as Dagster loads it (CONTRACT §2, §3); no stack needed."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest
from dagster import (
    AssetKey,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    TimeWindow,
    WeeklyPartitionsDefinition,
)

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.settings import Settings

defs = load_code_location()

TABLE_KEYS = [AssetKey("permanent_user_properties"), AssetKey("changeble_user_properties")]


def test_the_code_location_loads_and_validates():
    Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} >= {
        "amplitude_events",
        "permanent_user_properties",
        "changeble_user_properties",
        "tmp_user_properties",
    }
    migrate = defs.resolve_job_def("migrate_tmp_user_properties")
    assert [node.name for node in migrate.nodes] == ["migrate_tmp_user_properties_pages"]
    export = defs.resolve_job_def("export_amplitude_events")
    assert export.partitions_def == weekly_partitions
    assert {node.name for node in export.nodes} == {
        "amplitude_events",
        "amplitude_events_user_properties_keys_known",
        "freshness_checks",
    }
    backlog = defs.resolve_sensor_def("tmp_user_properties_backlog_sensor")
    assert (backlog.job_name, backlog.default_status) == (
        "migrate_tmp_user_properties",
        DefaultSensorStatus.STOPPED,
    )
    weekly = defs.resolve_schedule_def("weekly_amplitude_export")
    assert (weekly.job_name, weekly.cron_schedule, weekly.execution_timezone) == (
        "export_amplitude_events",
        "0 3 * * 1",
        "UTC",
    )
    hourly = defs.resolve_schedule_def("hourly_tmp_user_properties_migration")
    assert hourly.job_name == "migrate_tmp_user_properties"


def test_every_weekly_asset_uses_the_monday_partitions():
    graph = defs.resolve_asset_graph()
    for key in [AssetKey("amplitude_events"), *TABLE_KEYS]:
        assert graph.get(key).partitions_def == weekly_partitions, key
    assert graph.get(AssetKey("amplitude_events")).child_keys >= set(TABLE_KEYS)


def test_weeks_start_on_monday_utc_and_only_finished_weeks_are_partitions():
    assert isinstance(weekly_partitions, WeeklyPartitionsDefinition)
    assert weekly_partitions.day_offset == 1
    assert weekly_partitions.timezone == "UTC"
    expected_start = date.fromisoformat(os.environ.get("AMPLITUDE_START_DATE") or "2024-01-01")
    assert weekly_partitions.start == datetime(
        expected_start.year, expected_start.month, expected_start.day, tzinfo=UTC
    )
    if expected_start != date(2024, 1, 1):
        pytest.skip("AMPLITUDE_START_DATE moves the first partition")

    # Wednesday 2024-01-17: the week of the 15th is not finished yet.
    keys = weekly_partitions.get_partition_keys(current_time=datetime(2024, 1, 17, 12, tzinfo=UTC))
    assert keys == ["2024-01-01", "2024-01-08"]
    keys = weekly_partitions.get_partition_keys(current_time=datetime(2024, 3, 4, 0, 0, 1, tzinfo=UTC))
    assert len(keys) == 9
    assert all(date.fromisoformat(key).weekday() == 0 for key in keys)
    assert weekly_partitions.time_window_for_partition_key("2024-01-08") == TimeWindow(
        datetime(2024, 1, 8, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC)
    )


def test_the_default_start_date_is_2024_01_01(monkeypatch):
    monkeypatch.delenv("AMPLITUDE_START_DATE", raising=False)
    assert Settings.from_env().start_date == date(2024, 1, 1)
    monkeypatch.setenv("AMPLITUDE_START_DATE", "2024-01-03")
    with pytest.raises(ValueError, match="Monday"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("resource", "field", "variable"),
    [
        ("amplitude", "api_key", "AMPLITUDE_API_KEY"),
        ("amplitude", "secret_key", "AMPLITUDE_SECRET_KEY"),
        ("dwh", "url", "DWH_URL"),
        ("raw_event_store", "bucket", "S3_BUCKET"),
    ],
)
def test_secrets_are_env_var_names_not_values(monkeypatch, resource, field, variable):
    secret = f"secret-value-of-{variable}"
    monkeypatch.setenv(variable, secret)
    configured = defs.resources[resource]
    value = getattr(configured, field)
    assert isinstance(value, EnvVar)
    assert value.env_var_name == variable
    assert value.get_value() == secret  # it is read at run time, from the environment
    # What Dagster shows as the resource's config: the variable's name, never its value.
    shown = configured.get_resource_definition().config_schema.default_value
    assert shown[field] == {"env": variable}
    assert secret not in repr(shown)


def test_a_broken_mapping_file_stops_the_code_location_from_loading(tmp_path):
    broken = tmp_path / "field_mappings.yaml"
    broken.write_text("identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: integer}\n", encoding="utf-8")
    loaded = subprocess.run(
        [sys.executable, "-c", "import amplitude_pipeline; amplitude_pipeline.defs()"],
        env={**os.environ, "FIELD_MAPPINGS_PATH": str(broken)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode != 0
    assert "changeable.age.type" in loaded.stderr


def test_runs_execute_their_steps_in_their_own_process():
    """A process per step would import the code location again: seconds of start-up per run (issue 10)."""
    jobs = [defs.resolve_implicit_global_asset_job_def()]
    jobs += [defs.resolve_job_def(name) for name in ("export_amplitude_range", "load_s3_event_files")]
    assert {job.executor_def.name for job in jobs} == {"in_process"}
