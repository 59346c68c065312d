"""``permanent_user_properties`` and ``changeble_user_properties`` from a week's events."""

from collections.abc import Iterator

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    Failure,
    MaterializeResult,
    ResourceParam,
    TimeWindowPartitionMapping,
    multi_asset,
)
from pydantic import Field

from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL
from amplitude_pipeline.defs.user_properties.loading import (
    START_AFTER_DESCRIPTION,
    FileLoadConfig,
    load_file_into_tables,
    prepare_tables,
)
from amplitude_pipeline.load.event_files import (
    FileLoadInProgressError,
)
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore


class UserPropertiesLoadConfig(FileLoadConfig):
    start_after: int | None = Field(default=None, description=START_AFTER_DESCRIPTION)


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
    prepare_tables(dwh, context.log)
    try:
        loaded = load_file_into_tables(
            context,
            dwh,
            raw_event_store,
            metrics_pusher,
            key,
            start_after=config.start_after,
            batch_size=config.batch_size,
            if_missing=f"materialize amplitude_events for {context.partition_key} first.",
        )
    except FileLoadInProgressError as error:
        raise Failure(description=str(error), metadata={"file_key": key}, allow_retries=False) from error
    assert loaded is not None  # a required object is loaded or fails the step
    for table, metadata in loaded.items():
        yield MaterializeResult(asset_key=table, metadata=metadata)
