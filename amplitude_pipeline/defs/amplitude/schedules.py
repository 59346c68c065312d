from dagster import build_schedule_from_partitioned_job

from amplitude_pipeline.defs.amplitude.jobs import export_amplitude_events

# Monday 03:00 UTC for the week that just ended: Amplitude makes an hour exportable about
# two hours after it closes. Stopped until an operator turns it on.
weekly_amplitude_export = build_schedule_from_partitioned_job(
    export_amplitude_events, hour_of_day=3, name="weekly_amplitude_export"
)
