"""Every way a run that writes the DWH tables starts carries the tag, and every such step is in
the pool, that the production queue limits (deploy/dagster.yaml ``concurrency``); no stack needed."""

import pytest
from dagster import AssetKey

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL, DWH_LOAD_TAGS
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE

defs = load_code_location()

TABLE_KEYS = {AssetKey(PERMANENT_TABLE), AssetKey(CHANGEABLE_TABLE)}


@pytest.mark.parametrize("job_name", ["load_s3_event_files", "migrate_tmp_user_properties"])
def test_the_jobs_that_load_the_tables_tag_their_runs(job_name):
    job = defs.resolve_job_def(job_name)
    assert DWH_LOAD_TAGS.items() <= job.tags.items(), job.tags


def test_every_step_that_writes_the_dwh_is_in_the_pool_the_queue_limits():
    """The pool also reaches runs no tag does: a table backfill or materialization from the UI."""
    graph = defs.resolve_asset_graph()
    assert all(graph.get(key).pools == {DWH_LOAD_POOL} for key in TABLE_KEYS)
    for job_name in ("load_s3_event_files", "migrate_tmp_user_properties"):
        job = defs.resolve_job_def(job_name)
        assert {node.definition.pool for node in job.graph.node_dict.values()} == {DWH_LOAD_POOL}, job_name
