"""Helpers for tests of the user-properties jobs and sensors."""

import os
from typing import Any

from dagster import Definitions, definitions, in_process_executor
from sqlalchemy import select

from amplitude_pipeline.defs.user_properties.jobs import load_s3_event_files
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline_tests.load.events import event
from amplitude_pipeline_tests.support import pipeline_resources, stack_dwh, stack_store


def permanent_ehr_ids(dwh: DWHRepository) -> list[str]:
    with dwh.engine.connect() as conn:
        return sorted(conn.execute(select(dwh.tables.permanent.c.ehr_id)).scalars())


def patients(day: str, *ehr_ids: str) -> list[dict[str, Any]]:
    return [event(f"{day} {9 + i:02d}:00:00", ehr_id=ehr_id) for i, ehr_id in enumerate(ehr_ids)]


JOB_S3_PREFIX_VARIABLE = "TEST_LOAD_JOB_S3_PREFIX"
JOB_DWH_SCHEMA_VARIABLE = "TEST_LOAD_JOB_DWH_SCHEMA"


@definitions
def load_job_on_the_test_stack() -> Definitions:
    """A code location of ``load_s3_event_files`` over the stack, the bucket prefix and the DWH
    schema named by ``JOB_S3_PREFIX_VARIABLE`` and ``JOB_DWH_SCHEMA_VARIABLE`` (read when it
    loads), for tests that launch runs the way the UI does: from a workspace."""
    store = stack_store(os.environ[JOB_S3_PREFIX_VARIABLE])
    dwh = stack_dwh(os.environ[JOB_DWH_SCHEMA_VARIABLE])
    return Definitions(
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=store, dwh=dwh),
        executor=in_process_executor,
    )
