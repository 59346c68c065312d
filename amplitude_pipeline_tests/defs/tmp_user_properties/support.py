"""Helpers for tests of the tmp_user_properties migration job."""

from typing import Any

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult

from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.defs.tmp_user_properties.jobs import migrate_tmp_user_properties
from amplitude_pipeline.defs.tmp_user_properties.sensors import MIGRATION_JOB
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline_tests.defs.support import NO_METRICS
from amplitude_pipeline_tests.load.support import tmp_row

OP_NAME = "migrate_tmp_user_properties_pages"


def run_migration(
    dwh: DWHRepository,
    instance: DagsterInstance,
    page_size: int,
    metrics_pusher: MetricsPusher = NO_METRICS,
) -> ExecuteInProcessResult:
    defs = Definitions(
        jobs=[migrate_tmp_user_properties], resources={"dwh": dwh, "metrics_pusher": metrics_pusher}
    )
    return defs.resolve_job_def(MIGRATION_JOB).execute_in_process(
        run_config={"ops": {OP_NAME: {"config": {"page_size": page_size}}}},
        instance=instance,
        raise_on_error=False,
    )


def five_rows() -> list[dict[str, Any]]:
    """Four patients (E0..E3) and one anonymous user known only by amplitude_id."""
    return [tmp_row(i, ehr_id=f"E{i}", amplitude_id=i) for i in range(4)] + [
        tmp_row(10, ehr_id=None, amplitude_id=77)
    ]
