from dagster import WeeklyPartitionsDefinition

from amplitude_pipeline.defs.settings import SETTINGS

# Monday-start UTC weeks keyed by their Monday; only finished weeks are partitions.
weekly_partitions = WeeklyPartitionsDefinition(
    start_date=SETTINGS.start_date.isoformat(), day_offset=1, timezone="UTC", fmt="%Y-%m-%d"
)
