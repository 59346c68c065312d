"""``migrate_tmp_user_properties``: the tmp table's unmigrated rows into the two tables."""

from collections.abc import Iterator, Mapping

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    AssetObservation,
    Config,
    MetadataValue,
    OpExecutionContext,
    ResourceParam,
    job,
    op,
)
from pydantic import Field

from amplitude_pipeline.defs.failures import stopped_load
from amplitude_pipeline.defs.metadata import migration_metadata, tables_metadata
from amplitude_pipeline.defs.metrics import recording
from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL, DWH_LOAD_TAGS
from amplitude_pipeline.defs.tmp_user_properties.assets import tmp_user_properties_observation
from amplitude_pipeline.defs.user_properties.checks import CheckedLoad, check_evaluations_after_load
from amplitude_pipeline.load import tmp_table
from amplitude_pipeline.load.metrics import tmp_table_labels
from amplitude_pipeline.load.tmp_table import DEFAULT_PAGE_SIZE, MigrationResult, TmpRowMigrationError
from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository


class MigrationConfig(Config):
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, gt=0, description="Rows per page and per transaction.")


@op(out={}, pool=DWH_LOAD_POOL)
def migrate_tmp_user_properties_pages(
    context: OpExecutionContext,
    config: MigrationConfig,
    dwh: ResourceParam[DWHRepository],
    metrics_pusher: MetricsPusher,
) -> Iterator[AssetMaterialization | AssetObservation | AssetCheckEvaluation]:
    with recording(metrics_pusher, context.log, tmp_table_labels(dwh.db_schema)) as load:
        dwh.ensure_schema()
        try:
            result = tmp_table.migrate_tmp_user_properties(dwh, page_size=config.page_size, log=context.log)
        except TmpRowMigrationError as error:
            # Yielded rather than context.log_event(): Dagster drops logged events when the op
            # raises, and the pages committed before the bad row must still be recorded.
            yield from _materializations(dwh, error.result, load.finish(error.result, error))
            yield from _after_migration(context, dwh)
            raise stopped_load(context, error) from error
        yield from _materializations(dwh, result, load.finish(result))
    yield from _after_migration(context, dwh)


def _after_migration(
    context: OpExecutionContext, dwh: DWHRepository
) -> Iterator[AssetObservation | AssetCheckEvaluation]:
    """The source's backlog as the migration left it, and the tables' checks."""
    yield tmp_user_properties_observation(dwh)
    yield from check_evaluations_after_load(
        dwh, CheckedLoad(f"the migration of {TMP_TABLE}"), context.instance, context.run_id
    )


def _materializations(
    dwh: DWHRepository, result: MigrationResult, metrics: Mapping[str, MetadataValue]
) -> Iterator[AssetMaterialization]:
    shared = {**migration_metadata(result), **metrics}
    for table, metadata in tables_metadata(dwh, result, shared, only_written=True).items():
        yield AssetMaterialization(
            asset_key=table, description=f"migrated from {TMP_TABLE}", metadata=metadata
        )


@job(
    description=f"Migrate unmigrated {TMP_TABLE} rows into the two tables, page by page.",
    tags=DWH_LOAD_TAGS,
)
def migrate_tmp_user_properties() -> None:
    migrate_tmp_user_properties_pages()
