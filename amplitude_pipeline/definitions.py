"""The code location: every asset, check, job, schedule and sensor, and their resources."""

from dagster import Definitions

from amplitude_pipeline.defs.checks import user_properties_keys_known
from amplitude_pipeline.defs.events import amplitude_events
from amplitude_pipeline.defs.jobs import export_amplitude_events_job
from amplitude_pipeline.defs.resources import build_resources
from amplitude_pipeline.defs.schedules import weekly_export_schedule
from amplitude_pipeline.defs.tmp_migration import (
    hourly_tmp_migration_schedule,
    migrate_tmp_user_properties_job,
    tmp_user_properties,
    tmp_user_properties_backlog_sensor,
)
from amplitude_pipeline.defs.user_properties import user_properties_tables
from amplitude_pipeline.settings import SETTINGS
from amplitude_pipeline.transform.mapping import load_field_mappings

# CONTRACT §5: the mapping is validated at start-up, so a broken field_mappings.yaml stops the
# code location from loading (the error names the entry) instead of failing runs later.
load_field_mappings(SETTINGS.field_mappings_path)

defs = Definitions(
    assets=[amplitude_events, user_properties_tables, tmp_user_properties],
    asset_checks=[user_properties_keys_known],
    jobs=[export_amplitude_events_job, migrate_tmp_user_properties_job],
    schedules=[weekly_export_schedule, hourly_tmp_migration_schedule],
    sensors=[tmp_user_properties_backlog_sensor],
    resources=build_resources(SETTINGS),
)
