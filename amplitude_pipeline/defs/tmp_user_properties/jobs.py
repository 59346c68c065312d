"""``migrate_tmp_user_properties``: the tmp table's unmigrated rows into the two tables."""

from collections.abc import Iterator, Mapping

from dagster import AssetMaterialization, Config, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from amplitude_pipeline.defs.failures import stopped_load
from amplitude_pipeline.defs.metadata import write_counts_metadata
from amplitude_pipeline.defs.metrics import MetricsPusher
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL, DWH_LOAD_TAGS
from amplitude_pipeline.load import tmp_table
from amplitude_pipeline.load.tmp_table import DEFAULT_PAGE_SIZE, MigrationResult, TmpRowMigrationError
from amplitude_pipeline.metrics import tmp_table_labels
from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository


class MigrationConfig(Config):
    page_size: int = Field(default=DEFAULT_PAGE_SIZE, gt=0, description="Rows per page and per transaction.")


@op(out={}, pool=DWH_LOAD_POOL)
def migrate_tmp_user_properties_pages(
    context: OpExecutionContext, config: MigrationConfig, dwh: DWHRepository, metrics_pusher: MetricsPusher
) -> Iterator[AssetMaterialization]:
    with metrics_pusher.recording(context.log, tmp_table_labels(dwh.db_schema)) as recording:
        dwh.ensure_schema()
        try:
            result = tmp_table.migrate_tmp_user_properties(dwh, page_size=config.page_size, log=context.log)
        except TmpRowMigrationError as error:
            # Yielded rather than context.log_event(): Dagster drops logged events when the op
            # raises, and the pages committed before the bad row must still be recorded.
            yield from table_materializations(dwh, error.result, recording.finish(error.result, error))
            raise stopped_load(context, error) from error
        yield from table_materializations(dwh, result, recording.finish(result))


def table_materializations(
    dwh: DWHRepository, result: MigrationResult, metrics: Mapping[str, MetadataValue]
) -> Iterator[AssetMaterialization]:
    """One materialization per table that this migration wrote to, with the run's metrics."""
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
                **metrics,
            },
        )


@job(
    description=f"Migrate unmigrated {TMP_TABLE} rows into the two tables, page by page.",
    tags=DWH_LOAD_TAGS,
)
def migrate_tmp_user_properties() -> None:
    migrate_tmp_user_properties_pages()
