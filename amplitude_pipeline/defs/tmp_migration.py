"""``tmp_user_properties``: the second source, migrated into the tables by a job."""

from collections.abc import Iterator

from dagster import (
    AssetMaterialization,
    Config,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Failure,
    MetadataValue,
    ObserveResult,
    OpExecutionContext,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    observable_source_asset,
    op,
    sensor,
)
from pydantic import Field

from amplitude_pipeline.defs.metadata import write_counts_metadata
from amplitude_pipeline.load.tmp_table import (
    DEFAULT_PAGE_SIZE,
    MigrationResult,
    TmpRowMigrationError,
    backlog,
    migrate_tmp_user_properties,
)
from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository

MIGRATION_JOB = "migrate_tmp_user_properties"
_UNFINISHED_RUN_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


@observable_source_asset(
    name=TMP_TABLE,
    group_name="dwh",
    tags={"dagster/kind/postgres": ""},
    description="User properties written by other systems; rows wait here until migrated.",
)
def tmp_user_properties(dwh: DWHRepository) -> ObserveResult:
    dwh.ensure_schema()
    state = backlog(dwh)
    oldest = state.oldest_unmigrated_event_time
    return ObserveResult(
        metadata={
            "unmigrated_rows": MetadataValue.int(state.unmigrated_rows),
            "oldest_unmigrated_event_time": MetadataValue.text(oldest.isoformat() if oldest else "none"),
        }
    )


class MigrationConfig(Config):
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, gt=0, description="Rows per page and per transaction.")


@op(name="migrate_tmp_user_properties_pages", out={})
def migrate_pages(
    context: OpExecutionContext, config: MigrationConfig, dwh: DWHRepository
) -> Iterator[AssetMaterialization]:
    dwh.ensure_schema()
    try:
        result = migrate_tmp_user_properties(dwh, page_size=config.page_size, log=context.log)
    except TmpRowMigrationError as error:
        # Yielded rather than context.log_event(): Dagster drops logged events when the op raises,
        # and the pages committed before the bad row must still be recorded.
        yield from table_materializations(dwh, error.result)
        raise Failure(description=str(error), metadata=error.metadata) from error
    yield from table_materializations(dwh, result)


def table_materializations(dwh: DWHRepository, result: MigrationResult) -> Iterator[AssetMaterialization]:
    """One materialization per table that this migration wrote to."""
    for table, counts in (
        (dwh.tables.permanent, result.permanent),
        (dwh.tables.changeable, result.changeable),
    ):
        if counts.candidates == 0:
            continue
        yield AssetMaterialization(
            asset_key=table.name,
            description=f"migrated from {TMP_TABLE}",
            metadata={
                "source": TMP_TABLE,
                "rows_migrated": MetadataValue.int(result.rows_migrated),
                "pages": MetadataValue.int(result.pages),
                "skipped_without_identity": MetadataValue.int(result.skipped_without_identity),
                **write_counts_metadata(counts),
                "dagster/row_count": MetadataValue.int(dwh.count_rows(table)),
                "duration_seconds": MetadataValue.float(result.duration_seconds),
            },
        )


@job(
    name=MIGRATION_JOB, description=f"Migrate unmigrated {TMP_TABLE} rows into the two tables, page by page."
)
def migrate_tmp_user_properties_job() -> None:
    migrate_pages()


hourly_tmp_migration_schedule = ScheduleDefinition(
    name="hourly_tmp_user_properties_migration",
    job=migrate_tmp_user_properties_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
)


@sensor(
    job=migrate_tmp_user_properties_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description=f"Starts {MIGRATION_JOB} when {TMP_TABLE} has unmigrated rows and no migration is running "
    "(an alternative to the hourly schedule).",
)
def tmp_user_properties_backlog_sensor(
    context: SensorEvaluationContext, dwh: DWHRepository
) -> RunRequest | SkipReason:
    running = context.instance.get_run_records(
        RunsFilter(job_name=MIGRATION_JOB, statuses=_UNFINISHED_RUN_STATUSES), limit=1
    )
    if running:
        return SkipReason(f"{MIGRATION_JOB} is already running ({running[0].dagster_run.run_id})")
    dwh.ensure_schema()
    state = backlog(dwh)
    if state.unmigrated_rows == 0:
        return SkipReason(f"{TMP_TABLE} has no unmigrated rows")
    return RunRequest(tags={"unmigrated_rows": str(state.unmigrated_rows)})
