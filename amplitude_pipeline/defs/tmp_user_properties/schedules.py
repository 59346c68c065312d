from dagster import DefaultScheduleStatus, ScheduleDefinition

from amplitude_pipeline.defs.tmp_user_properties.jobs import migrate_tmp_user_properties

# Stopped until an operator turns it on (or the backlog sensor instead).
hourly_tmp_user_properties_migration = ScheduleDefinition(
    name="hourly_tmp_user_properties_migration",
    job=migrate_tmp_user_properties,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
)
