"""deploy/helm/values.yaml gives the Kubernetes instance deploy/dagster.yaml's policies (issue 16).

The chart writes the instance's dagster.yaml from the values (``helm_chart`` transcribes how);
these tests compare what it writes with deploy/dagster.yaml and load it into a real
``DagsterInstance``, so that Dagster itself checks every section against its schema. The chart's
own values schema is not available here (see docs/deployment.md, "Checked without a cluster").
"""

from pathlib import Path

import yaml
from dagster import DagsterInstance
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_k8s import K8sRunLauncher

from amplitude_pipeline.defs.tags import DWH_LOAD_TAG_KEY, DWH_LOAD_TAGS
from amplitude_pipeline_tests.deployment.helm_chart import ChartRelease, load_values, local_instance_config
from amplitude_pipeline_tests.support import REPO_ROOT

PRODUCTION_INSTANCE = REPO_ROOT / "deploy" / "dagster.yaml"
SAME_POLICIES = ("concurrency", "run_retries", "retention", "sensors", "schedules", "backfills", "telemetry")
# Where Kubernetes differs, and why (docs/deployment.md): the K8sRunLauncher can start a new pod
# for a run whose pod died, and a pod may wait for its image and for a node to be added.
KUBERNETES_RUN_MONITORING = {"max_resume_run_attempts": 2, "start_timeout_seconds": 600}


def chart_instance_sections() -> dict:
    return ChartRelease(load_values()).instance_sections()


def test_the_chart_writes_the_queue_retries_and_retention_of_the_production_instance():
    sections = chart_instance_sections()
    production = yaml.safe_load(PRODUCTION_INSTANCE.read_text())

    for policy in SAME_POLICIES:
        assert sections[policy] == production[policy], policy
    assert sections["run_monitoring"] == production["run_monitoring"] | KUBERNETES_RUN_MONITORING
    assert {key: sections["compute_logs"][key] for key in ("module", "class")} == {
        key: production["compute_logs"][key] for key in ("module", "class")
    }
    for setting in ("skip_empty_files", "upload_interval"):
        assert sections["compute_logs"]["config"][setting] == production["compute_logs"]["config"][setting]


def test_dagster_loads_the_instance_the_chart_writes_with_its_dwh_load_limit(tmp_path: Path):
    instance_config = local_instance_config(ChartRelease(load_values()), tmp_path)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance_config))

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        [dwh_limit] = [limit for limit in queue.tag_concurrency_limits if limit["key"] == DWH_LOAD_TAG_KEY]
        assert {dwh_limit["key"]: dwh_limit["value"]} == DWH_LOAD_TAGS
        assert 1 <= dwh_limit["limit"] < queue.max_concurrent_runs
        pools = instance.get_concurrency_config().pool_config
        assert (pools.pool_granularity.value, pools.default_pool_limit) == ("run", dwh_limit["limit"])
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 2
        assert instance.run_monitoring_max_runtime_seconds == 86400
        assert instance.run_retries_enabled
        assert instance.run_retries_retry_on_asset_or_op_failure is False
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
