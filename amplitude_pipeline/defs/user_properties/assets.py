"""``permanent_user_properties`` and ``changeble_user_properties`` from a week's events."""

from collections.abc import Iterator

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    ResourceParam,
    TimeWindowPartitionMapping,
    multi_asset,
)
from pydantic import Field

from amplitude_pipeline.defs.failures import stopped_load
from amplitude_pipeline.defs.metadata import file_load_metadata, tables_metadata
from amplitude_pipeline.defs.metrics import s3_file_recording
from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL
from amplitude_pipeline.load.event_files import (
    DEFAULT_BATCH_SIZE,
    EventFileLoadError,
    FileLoadInProgressError,
    load_event_file,
)
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore


class UserPropertiesLoadConfig(Config):
    start_after: int | None = Field(
        default=None,
        description=(
            "0-based line after which to start (processing starts at line N+1; -1 = the whole "
            "file). Unset: resume after the stored checkpoint."
        ),
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE, gt=0, description="Lines per transaction (and checkpoint)."
    )


def _week_deps(table: str) -> list[AssetDep]:
    """The week's export, and the table's previous week: CONTRACT §6 resolves a week's rows against
    what earlier weeks left, so a backfill of the tables loads its weeks one after another, in
    week order, and stops at the first that fails (CONTRACT §7)."""
    return [
        AssetDep("amplitude_events"),
        AssetDep(table, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)),
    ]


@multi_asset(
    name="user_properties_tables",
    specs=[
        AssetSpec(
            PERMANENT_TABLE,
            deps=_week_deps(PERMANENT_TABLE),
            group_name="dwh",
            kinds={"postgres"},
            description="One row per ehr_id with its static facts; the first non-NULL value wins.",
        ),
        AssetSpec(
            CHANGEABLE_TABLE,
            deps=_week_deps(CHANGEABLE_TABLE),
            group_name="dwh",
            kinds={"postgres"},
            description="The freshest version of each user's changeable properties (per ehr_id, "
            "else per amplitude_id).",
        ),
    ],
    partitions_def=weekly_partitions,
    can_subset=False,
    pool=DWH_LOAD_POOL,
)
def user_properties_tables(
    context: AssetExecutionContext,
    config: UserPropertiesLoadConfig,
    dwh: ResourceParam[DWHRepository],
    raw_event_store: ResourceParam[RawEventStore],
    metrics_pusher: MetricsPusher,
) -> Iterator[MaterializeResult]:
    key = raw_event_store.week_key(context.partition_key)
    with s3_file_recording(metrics_pusher, context.log, dwh, key) as recording:
        added_columns = dwh.ensure_schema()
        if added_columns:
            context.log.info(f"added mapped columns: {', '.join(added_columns)}")
        if raw_event_store.stat(key) is None:
            raise Failure(
                description=f"{raw_event_store.uri(key)} does not exist: materialize amplitude_events "
                f"for {context.partition_key} first.",
                metadata={"file_key": key},
            )
        try:
            result = load_event_file(
                dwh,
                raw_event_store,
                key,
                start_after=config.start_after,
                batch_size=config.batch_size,
                log=context.log,
            )
        except EventFileLoadError as error:
            recording.finish(error.result, error)
            raise stopped_load(context, error, {"records_loaded_this_run": error.result.records}) from error
        except FileLoadInProgressError as error:
            raise Failure(description=str(error), metadata={"file_key": key}, allow_retries=False) from error
        metrics = recording.finish(result)
    for table, metadata in tables_metadata(dwh, result, {**file_load_metadata(result), **metrics}).items():
        yield MaterializeResult(asset_key=table, metadata=metadata)
