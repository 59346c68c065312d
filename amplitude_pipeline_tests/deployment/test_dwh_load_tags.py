"""Every way a run that writes the DWH tables starts carries the tag the production queue limits
(deploy/dagster.yaml ``tag_concurrency_limits``); no stack needed."""

import pytest
from dagster import AssetKey, AutomationConditionSensorDefinition

from amplitude_pipeline.definitions import defs
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE

TABLE_KEYS = {AssetKey(PERMANENT_TABLE), AssetKey(CHANGEABLE_TABLE)}


@pytest.mark.xfail(
    strict=True,
    reason="tables_after_export_sensor (defs/user_properties/automation.py) tags its runs dwh_load=true, "
    "not amplitude_pipeline/dwh_load=true (amplitude_pipeline/defs/tags.py): the queue does not limit them",
)
def test_the_automation_that_loads_the_tables_tags_its_runs():
    graph = defs.resolve_asset_graph()
    sensors = [
        sensor
        for sensor in defs.get_repository_def().sensor_defs
        if isinstance(sensor, AutomationConditionSensorDefinition)
        and TABLE_KEYS & set(sensor.asset_selection.resolve(graph))
    ]
    assert sensors, "no automation sensor targets the table assets"
    for sensor in sensors:
        assert DWH_LOAD_TAGS.items() <= sensor.run_tags.items(), (sensor.name, sensor.run_tags)


@pytest.mark.xfail(
    strict=True,
    reason="the jobs carry no tags: a run launched by hand or by a schedule is not counted against the "
    "queue's DWH-load limit (s3_new_objects_sensor's run requests do carry it)",
)
@pytest.mark.parametrize("job_name", ["load_s3_event_files", "migrate_tmp_user_properties"])
def test_the_jobs_that_load_the_tables_tag_their_runs(job_name):
    job = defs.resolve_job_def(job_name)
    assert DWH_LOAD_TAGS.items() <= job.tags.items(), job.tags
