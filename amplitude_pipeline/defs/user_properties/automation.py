"""The two table assets follow every week's export with no person acting: declarative automation.

``tables_after_export`` is ``AutomationCondition.eager()`` without its latest-time-window limit
(a backfill's older weeks need their tables too) and without its "newly missing" branch (weeks
exported before the automation existed are not loaded behind anyone's back), plus the week's
blocking key check. ``tables_after_export_sensor`` evaluates it in the daemon, on by default.
"""

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE

tables_after_export = (
    # Every week whose amplitude_events materialized since that week's tables were last requested
    # or updated, in any partition (not only the latest); stays true until the tables are handled.
    # any_deps_updated ignores an export whose own run also selected the tables (a backfill of
    # all three assets loads those weeks itself).
    AutomationCondition.any_deps_updated().since_last_handled()
    # The week's user_properties_keys_known (partitioned: judged per week) passed against the
    # week's latest export; while it fails or has not run, the week waits.
    & AutomationCondition.all_deps_blocking_checks_passed()
    # Not while the week is being exported again, nor while its tables are already in a run or a
    # backfill.
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("tables_after_export")

tables_after_export_sensor = AutomationConditionSensorDefinition(
    "tables_after_export_sensor",
    target=AssetSelection.assets(PERMANENT_TABLE, CHANGEABLE_TABLE),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    run_tags=DWH_LOAD_TAGS,
    # One run per week, in the run queue like any other: no backfill objects to follow.
    emit_backfills=False,
    description=(
        "Loads a week's permanent_user_properties and changeble_user_properties after that week's "
        "amplitude_events materializes and its user_properties_keys_known check passes (schedule, "
        "backfill or by hand). Its runs carry the DWH-load tag the production queue limits. Stop it here "
        "to load tables only by hand."
    ),
)
