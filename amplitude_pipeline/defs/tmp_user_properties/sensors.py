from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    ResourceParam,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from amplitude_pipeline.defs.tmp_user_properties.assets import tmp_user_properties_observation
from amplitude_pipeline.defs.tmp_user_properties.jobs import migrate_tmp_user_properties
from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository

MIGRATION_JOB = migrate_tmp_user_properties.name
_UNFINISHED_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@sensor(
    job=migrate_tmp_user_properties,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description=f"Starts {MIGRATION_JOB} when {TMP_TABLE} has unmigrated rows and no migration is running "
    "(an alternative to the hourly schedule).",
)
def tmp_user_properties_backlog_sensor(
    context: SensorEvaluationContext, dwh: ResourceParam[DWHRepository]
) -> RunRequest | SkipReason:
    running = context.instance.get_run_records(
        RunsFilter(job_name=MIGRATION_JOB, statuses=_UNFINISHED_RUN_STATUSES), limit=1
    )
    if running:
        return SkipReason(f"{MIGRATION_JOB} is already running ({running[0].dagster_run.run_id})")
    state = dwh.tmp_backlog()
    if not state.table_exists:
        return SkipReason(f"{TMP_TABLE} does not exist yet")
    if state.unmigrated_rows == 0:
        return SkipReason(f"{TMP_TABLE} has no unmigrated rows")
    return RunRequest(tags={"unmigrated_rows": str(state.unmigrated_rows)})


@sensor(
    minimum_interval_seconds=900,
    default_status=DefaultSensorStatus.RUNNING,
    description=f"Observes {TMP_TABLE} every 15 minutes: its unmigrated rows and the oldest of them "
    "show in the catalog whether or not migrations run. Reads only; starts no run.",
)
def tmp_user_properties_observation_sensor(
    context: SensorEvaluationContext, dwh: ResourceParam[DWHRepository]
) -> SensorResult:
    return SensorResult(asset_events=[tmp_user_properties_observation(dwh)])
