"""The code location: every asset, check, job, schedule and sensor, and their resources.

A ``dg`` project's definitions (``[tool.dg]`` in pyproject.toml): ``dg list defs``, ``dg check
defs`` and ``dg dev`` load ``defs`` below, as ``dagster … -m amplitude_pipeline`` and
workspace.yaml do. The definitions are listed explicitly rather than autoloaded from ``defs/``
(``load_from_defs_folder``): README "Layout" says why, with the start-up figures.
"""

import sys

import dagster as dg
from dagster import Definitions, in_process_executor

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.checks import user_properties_keys_known
from amplitude_pipeline.defs.amplitude.jobs import export_amplitude_events, export_amplitude_range
from amplitude_pipeline.defs.amplitude.schedules import weekly_amplitude_export
from amplitude_pipeline.defs.freshness import freshness_checks, freshness_sensor
from amplitude_pipeline.defs.resources import build_resources
from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.defs.tmp_user_properties.assets import tmp_user_properties
from amplitude_pipeline.defs.tmp_user_properties.jobs import migrate_tmp_user_properties
from amplitude_pipeline.defs.tmp_user_properties.schedules import hourly_tmp_user_properties_migration
from amplitude_pipeline.defs.tmp_user_properties.sensors import (
    tmp_user_properties_backlog_sensor,
    tmp_user_properties_observation_sensor,
)
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.defs.user_properties.automation import tables_after_export_sensor
from amplitude_pipeline.defs.user_properties.checks import user_properties_tables_checks
from amplitude_pipeline.defs.user_properties.jobs import load_s3_event_files
from amplitude_pipeline.defs.user_properties.sensors import s3_new_objects_sensor
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline.transform.mapping import MappingFileError


@dg.definitions
def defs() -> Definitions:
    # CONTRACT §5: the mapping is validated at start-up, so a broken field_mappings.yaml stops the
    # code location from loading (the error names the entry) instead of failing runs later.
    try:
        load_field_mappings_once(SETTINGS.field_mappings_path)
    except (MappingFileError, OSError) as error:
        # Said first and on one line: the CLI prints its own long traceback only after this.
        print(f"amplitude_pipeline cannot load: {error}", file=sys.stderr, flush=True)
        raise
    return Definitions(
        assets=[amplitude_events, user_properties_tables, tmp_user_properties],
        asset_checks=[user_properties_keys_known, user_properties_tables_checks, freshness_checks],
        jobs=[
            export_amplitude_events,
            export_amplitude_range,
            migrate_tmp_user_properties,
            load_s3_event_files,
        ],
        schedules=[weekly_amplitude_export, hourly_tmp_user_properties_migration],
        sensors=[
            tmp_user_properties_backlog_sensor,
            tmp_user_properties_observation_sensor,
            s3_new_objects_sensor,
            tables_after_export_sensor,
            freshness_sensor,
        ],
        resources=build_resources(SETTINGS),
        # Steps run one after another in the run's own process: a week's steps depend on each other
        # anyway, and a process per step would import the code location again (seconds per run).
        executor=in_process_executor,
    )
