"""``tmp_user_properties``: the second source, rows written by other systems until migrated.

Observed after every migration (``migrate_tmp_user_properties``) and every 15 minutes
(``tmp_user_properties_observation_sensor``), so that the catalog shows its backlog.
"""

from dagster import AssetObservation, MetadataValue, ObserveResult, ResourceParam, observable_source_asset

from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository


@observable_source_asset(
    name=TMP_TABLE,
    group_name="dwh",
    tags={"dagster/kind/postgres": ""},
    description="User properties written by other systems; rows wait here until migrated.",
)
def tmp_user_properties(dwh: ResourceParam[DWHRepository]) -> ObserveResult:
    return ObserveResult(metadata=backlog_metadata(dwh))


def tmp_user_properties_observation(dwh: DWHRepository) -> AssetObservation:
    """The same observation, as an event a job or a sensor reports."""
    return AssetObservation(asset_key=TMP_TABLE, metadata=backlog_metadata(dwh))


def backlog_metadata(dwh: DWHRepository) -> dict[str, MetadataValue]:
    state = dwh.tmp_backlog()
    oldest = state.oldest_unmigrated_event_time
    return {
        "unmigrated_rows": MetadataValue.int(state.unmigrated_rows),
        "oldest_unmigrated_event_time": MetadataValue.text(oldest.isoformat() if oldest else "none"),
        "table_exists": MetadataValue.bool(state.table_exists),
    }
