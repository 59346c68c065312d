"""``tmp_user_properties``: the migration job, its backlog sensor and the observable source."""

import uuid
from collections.abc import Iterator

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SkipReason,
    build_sensor_context,
    define_asset_job,
    instance_for_test,
)
from sqlalchemy import text

from amplitude_pipeline.defs.tmp_user_properties.assets import tmp_user_properties
from amplitude_pipeline.defs.tmp_user_properties.sensors import (
    MIGRATION_JOB,
    tmp_user_properties_backlog_sensor,
    tmp_user_properties_observation_sensor,
)
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline_tests.defs.support import (
    failure_metadata,
    materializations,
    values,
)
from amplitude_pipeline_tests.defs.tmp_user_properties.support import five_rows, run_migration
from amplitude_pipeline_tests.load.support import migrated_flags, seed, tmp_row

pytestmark = pytest.mark.integration


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def test_the_job_migrates_every_page_and_reports_both_tables(dwh, instance):
    seed(dwh, five_rows())

    result = run_migration(dwh, instance, page_size=2)

    assert result.success
    found = materializations(result)
    assert set(found) == {PERMANENT_TABLE, CHANGEABLE_TABLE}
    for table, rows in ((PERMANENT_TABLE, 4), (CHANGEABLE_TABLE, 5)):
        metadata = found[table]
        assert metadata["source"] == "tmp_user_properties"
        assert (metadata["rows_migrated"], metadata["pages"]) == (5, 3)
        assert (metadata["inserted"], metadata["updated"], metadata["unchanged"]) == (rows, 0, 0)
        assert metadata["dagster/row_count"] == rows
        assert instance.get_latest_materialization_event(AssetKey(table)) is not None
    assert dwh.tmp_backlog().unmigrated_rows == 0

    rerun = run_migration(dwh, instance, page_size=2)
    assert rerun.success
    assert materializations(rerun) == {}  # nothing to migrate, no table was written


def test_a_bad_row_fails_the_job_with_its_uuid_and_keeps_the_rows_before_it(dwh, instance):
    source = [tmp_row(i, ehr_id=f"E{i}") for i in range(3)]
    bad = source[1]
    bad["user_properties"]["age"] = "unknown"
    seed(dwh, source)

    result = run_migration(dwh, instance, page_size=10)

    assert not result.success
    metadata = failure_metadata(result)
    assert metadata["uuid"] == bad["uuid"]
    assert "age" in metadata["error_message"]
    assert metadata["rows_migrated"] == 1
    flags = migrated_flags(dwh)
    assert [flags[row["uuid"]] for row in source] == [True, False, False]
    # What was committed before the failure is still reported.
    found = materializations(result)
    assert {table: found[table]["inserted"] for table in found} == {PERMANENT_TABLE: 1, CHANGEABLE_TABLE: 1}


def sensor_result(dwh: DWHRepository, instance: DagsterInstance) -> RunRequest | SkipReason:
    with build_sensor_context(instance=instance, resources={"dwh": dwh}) as context:
        return tmp_user_properties_backlog_sensor(context)


def test_the_sensor_skips_without_unmigrated_rows(dwh, instance):
    result = sensor_result(dwh, instance)

    assert isinstance(result, SkipReason)
    assert "no unmigrated rows" in (result.skip_message or "")


def test_the_sensor_only_reads_a_schema_without_the_table(new_dwh, instance):
    """Issue 11: sensors and observable sources must only read; no DDL on every tick."""
    untouched = new_dwh(create=False)
    schema = untouched.db_schema
    result = sensor_result(untouched, instance)
    assert isinstance(result, SkipReason)
    assert "does not exist yet" in (result.skip_message or "")
    with untouched.engine.connect() as conn:
        assert conn.execute(text("SELECT to_regnamespace(:schema)"), {"schema": schema}).scalar() is None


def test_the_sensor_requests_a_run_when_rows_wait(dwh, instance):
    seed(dwh, five_rows())

    result = sensor_result(dwh, instance)

    assert isinstance(result, RunRequest)
    assert result.tags["unmigrated_rows"] == "5"


def test_the_sensor_skips_while_a_migration_is_running(dwh, instance):
    seed(dwh, five_rows())
    running = DagsterRun(job_name=MIGRATION_JOB, run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
    instance.add_run(running)

    result = sensor_result(dwh, instance)

    assert isinstance(result, SkipReason)
    assert running.run_id in (result.skip_message or "")


def test_observing_the_source_reports_the_unmigrated_rows(dwh, instance):
    rows = five_rows()
    seed(dwh, rows)
    defs = Definitions(
        assets=[tmp_user_properties],
        jobs=[define_asset_job("observe_tmp_user_properties", selection=[tmp_user_properties.key])],
        resources={"dwh": dwh},
    )

    result = defs.resolve_job_def("observe_tmp_user_properties").execute_in_process(instance=instance)

    assert result.success
    [observation] = result.asset_observations_for_node("tmp_user_properties")
    assert observation.asset_key == AssetKey("tmp_user_properties")
    metadata = values(dict(observation.metadata))
    assert metadata["unmigrated_rows"] == 5
    assert metadata["oldest_unmigrated_event_time"] == min(row["event_time"] for row in rows).isoformat()


def test_the_observation_sensor_reports_the_backlog_without_starting_a_run(dwh, instance):
    seed(dwh, five_rows())
    with build_sensor_context(instance=instance, resources={"dwh": dwh}) as context:
        result = tmp_user_properties_observation_sensor.evaluate_tick(context)

    assert not result.run_requests
    [observation] = result.asset_events
    assert observation.asset_key == AssetKey("tmp_user_properties")
    metadata = values(dict(observation.metadata))
    assert (metadata["unmigrated_rows"], metadata["table_exists"]) == (5, True)
    assert metadata["oldest_unmigrated_event_time"] == "2024-01-08T00:00:00+00:00"
    assert tmp_user_properties_observation_sensor.default_status == DefaultSensorStatus.RUNNING
