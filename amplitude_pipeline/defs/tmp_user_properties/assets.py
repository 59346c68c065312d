"""``tmp_user_properties``: the second source, rows written by other systems until migrated."""

from dagster import MetadataValue, ObserveResult, observable_source_asset

from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository


@observable_source_asset(
    name=TMP_TABLE,
    group_name="dwh",
    tags={"dagster/kind/postgres": ""},
    description="User properties written by other systems; rows wait here until migrated.",
)
def tmp_user_properties(dwh: DWHRepository) -> ObserveResult:
    state = dwh.tmp_backlog()
    oldest = state.oldest_unmigrated_event_time
    return ObserveResult(
        metadata={
            "unmigrated_rows": MetadataValue.int(state.unmigrated_rows),
            "oldest_unmigrated_event_time": MetadataValue.text(oldest.isoformat() if oldest else "none"),
            "table_exists": state.table_exists,
        }
    )
