"""The code location: every asset, check, job, schedule and sensor, and their resources."""

from dagster import Definitions

from amplitude_pipeline.defs.events import amplitude_events
from amplitude_pipeline.defs.jobs import export_amplitude_events_job
from amplitude_pipeline.defs.resources import build_resources
from amplitude_pipeline.defs.schedules import weekly_export_schedule
from amplitude_pipeline.defs.user_properties import user_properties_tables
from amplitude_pipeline.settings import SETTINGS

defs = Definitions(
    assets=[amplitude_events, user_properties_tables],
    jobs=[export_amplitude_events_job],
    schedules=[weekly_export_schedule],
    resources=build_resources(SETTINGS),
)
