"""deploy/dagster.yaml, the production instance: it loads, starts against PostgreSQL from the
DAGSTER_PG_* variables, and holds the queue, monitoring and retention policies (issue 8)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.scheduler.instigation import TickStatus
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from amplitude_pipeline.defs.tags import DWH_LOAD_TAG_KEY, DWH_LOAD_TAGS
from amplitude_pipeline_tests.deployment.support import fresh_dagster_database, instance_home

pytestmark = pytest.mark.integration


@pytest.fixture
def production_instance(stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    with fresh_dagster_database() as database:
        for name, value in database.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", "amplitude-raw")
        monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_PREFIX", "dagster/compute-logs")
        # The production file must not lean on the dev instance's variable.
        monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
        monkeypatch.setenv("DAGSTER_HOME", str(instance_home(tmp_path / "dagster_home")))
        with DagsterInstance.get() as instance:
            yield instance


def test_the_production_instance_stores_runs_in_the_postgresql_the_environment_names(production_instance):
    instance = production_instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")

    run = instance.add_run(DagsterRun(job_name="probe", run_id="probe-run", tags=DWH_LOAD_TAGS))

    assert [found.run_id for found in instance.get_runs()] == [run.run_id]
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.NOT_STARTED
    assert instance.get_run_by_id(run.run_id).tags[DWH_LOAD_TAG_KEY] == "true"


def test_the_queue_lets_a_bounded_number_of_dwh_loads_run_at_once(production_instance):
    coordinator = production_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    queue = production_instance.get_concurrency_config().run_queue_config
    assert queue is not None
    limits = [
        (limit["key"], limit.get("value"), limit["limit"]) for limit in queue.tag_concurrency_limits or []
    ]
    [(key, value, limit)] = [entry for entry in limits if entry[0] == DWH_LOAD_TAG_KEY]
    assert {key: value} == DWH_LOAD_TAGS
    assert 1 <= limit < queue.max_concurrent_runs
    pools = production_instance.get_concurrency_config().pool_config
    assert (pools.pool_granularity.value, pools.default_pool_limit) == ("run", limit)


def test_run_monitoring_frees_the_slots_of_runs_that_never_start_or_end(production_instance):
    instance = production_instance
    assert instance.run_monitoring_enabled
    # The default run launcher cannot resume a run worker; Dagster refuses a start otherwise.
    assert instance.run_monitoring_max_resume_run_attempts == 0
    assert 0 < instance.run_monitoring_start_timeout_seconds <= 600
    assert 0 < instance.run_monitoring_cancel_timeout_seconds <= 600
    assert instance.run_monitoring_max_runtime_seconds > 0
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
    # A crashed run worker's run is run again (it resumes from the checkpoints); a failed step is not.
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries >= 1
    assert instance.run_retries_retry_on_asset_or_op_failure is False


def test_old_ticks_are_purged(production_instance):
    for instigator in (InstigatorType.SCHEDULE, InstigatorType.SENSOR, InstigatorType.AUTO_MATERIALIZE):
        retention = production_instance.get_tick_retention_settings(instigator)
        assert all(0 < days <= 90 for days in retention.values()), (instigator, retention)
        assert retention[TickStatus.SKIPPED] <= retention[TickStatus.SUCCESS]


def test_compute_logs_go_to_s3_and_telemetry_is_off(production_instance):
    manager = production_instance.compute_log_manager
    assert isinstance(manager, S3ComputeLogManager)
    assert (manager._s3_bucket, manager._s3_prefix) == ("amplitude-raw", "dagster/compute-logs")
    assert production_instance.telemetry_enabled is False
