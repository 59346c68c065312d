"""The run pod deploy/helm/values.yaml gives a run, built by dagster-k8s itself (issue 16).

No cluster: the instance the chart writes from the values (``helm_chart``) is loaded with the
``K8sRunLauncher`` it names, a run of this code location is launched through that launcher, and
the Kubernetes Job it creates is caught where the Kubernetes client would send it. So the image,
environment, secrets, resources and labels asserted here are the ones dagster-k8s's own job
builder and container-context merge produce from these values: what docs/deployment.md promises.
"""

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from dagster import DagsterInstance, DagsterRun
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline_tests.deployment.helm_chart import ChartRelease, load_values, local_instance_config

CODE_LOCATION = "amplitude-pipeline"
JOB_NAME = "load_s3_event_files"
SECRET = "amplitude-pipeline-secrets"

# CONTRACT §2: every variable the code reads, the ones a table load cannot start without, and the
# ones that hold (or may hold) a credential.
CONTRACT_VARIABLES = {
    "AMPLITUDE_API_KEY",
    "AMPLITUDE_SECRET_KEY",
    "AMPLITUDE_EXPORT_URL",
    "AMPLITUDE_START_DATE",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "DWH_URL",
    "DWH_SCHEMA",
    "FIELD_MAPPINGS_PATH",
    "S3_WATCH_PREFIXES",
    "PROMETHEUS_PUSHGATEWAY_URL",
}
REQUIRED_VARIABLES = {"AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "S3_BUCKET", "DWH_URL"}
CREDENTIAL_VARIABLES = {
    "AMPLITUDE_API_KEY",
    "AMPLITUDE_SECRET_KEY",
    "DWH_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "PROMETHEUS_PUSHGATEWAY_URL",
}
# What dagster-k8s sets itself: the instance's home, its database password, the run's job.
DAGSTER_VARIABLES = {"DAGSTER_HOME", "DAGSTER_PG_PASSWORD", "DAGSTER_RUN_JOB_NAME"}
# A table load's peak resident memory (README "Speed", bench/): the memory limit must leave room.
LOADER_PEAK_RSS_MIB = 400


@dataclass(frozen=True)
class LaunchedRunPod:
    job: kubernetes.client.V1Job
    namespace: str
    run: DagsterRun

    @property
    def container(self) -> kubernetes.client.V1Container:
        [container] = self.job.spec.template.spec.containers
        return container

    @property
    def env(self) -> dict[str, kubernetes.client.V1EnvVar]:
        return {variable.name: variable for variable in self.container.env}


def launch_run_pod(release: ChartRelease, directory: Path, monkeypatch: pytest.MonkeyPatch) -> LaunchedRunPod:
    """Launches a run of ``load_s3_event_files`` through the chart's instance; returns its Job."""
    created: list[tuple[str, kubernetes.client.V1Job]] = []

    def create_namespaced_job(_api: object, body: kubernetes.client.V1Job, namespace: str, **_: Any) -> Any:
        created.append((namespace, body))
        return body

    monkeypatch.setattr(kubernetes.client.BatchV1Api, "create_namespaced_job", create_namespaced_job)
    (directory / "dagster.yaml").write_text(yaml.safe_dump(local_instance_config(release, directory)))
    deployment = release.user_deployment(CODE_LOCATION)
    # What the code server records on each run: its module, its image (the chart's
    # DAGSTER_CURRENT_IMAGE) and the container context the chart gives it, if any.
    code_origin = JobPythonOrigin(
        job_name=JOB_NAME,
        repository_origin=RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python",
            code_pointer=ModuleCodePointer("amplitude_pipeline", "defs", None),
            container_image=release.image(deployment),
            entry_point=["dagster"],
            container_context=release.code_server_container_context(deployment),
        ),
    )
    remote_origin = RemoteJobOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(
                host=f"{release.fullname}-{CODE_LOCATION}",
                port=deployment["port"],
                location_name=CODE_LOCATION,
            ),
            "__repository__",
        ),
        JOB_NAME,
    )
    with DagsterInstance.from_config(str(directory)) as instance:
        run = instance.add_run(
            DagsterRun(
                job_name=JOB_NAME,
                tags=DWH_LOAD_TAGS,
                job_code_origin=code_origin,
                remote_job_origin=remote_origin,
            )
        )
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    [(namespace, job)] = created
    return LaunchedRunPod(job=job, namespace=namespace, run=run)


@pytest.fixture
def release() -> ChartRelease:
    return ChartRelease(load_values())


@pytest.fixture
def run_pod(
    release: ChartRelease, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LaunchedRunPod]:
    yield launch_run_pod(release, tmp_path, monkeypatch)


def test_a_run_pod_runs_the_code_servers_image_as_a_dagster_run_worker(release, run_pod):
    deployment = release.user_deployment(CODE_LOCATION)
    assert run_pod.namespace == release.namespace
    assert run_pod.container.image == release.image(deployment)
    assert run_pod.container.image_pull_policy == "IfNotPresent"
    assert run_pod.container.args[:3] == ["dagster", "api", "execute_run"]
    pod_spec = run_pod.job.spec.template.spec
    # Kubernetes never starts a run again by itself: run monitoring and run retries do.
    assert (pod_spec.restart_policy, run_pod.job.spec.backoff_limit) == ("Never", 0)
    assert run_pod.container.security_context.run_as_non_root is True
    assert run_pod.container.security_context.allow_privilege_escalation is False


def test_a_run_pod_reaches_s3_through_the_service_account_with_the_iam_role(release, run_pod):
    assert run_pod.job.spec.template.spec.service_account_name == release.service_account_name
    assert release.values["serviceAccount"]["create"] is True
    assert "eks.amazonaws.com/role-arn" in release.values["serviceAccount"]["annotations"]


def test_a_run_pod_has_the_contract_environment_with_credentials_only_from_the_secret(release, run_pod):
    env = run_pod.env
    assert env.keys() >= REQUIRED_VARIABLES
    assert env.keys() <= CONTRACT_VARIABLES | DAGSTER_VARIABLES, "a variable the code does not read"
    # Nothing the Job does not list comes in through envFrom.
    assert not run_pod.container.env_from
    for name in env.keys() & CREDENTIAL_VARIABLES:
        assert env[name].value is None, name
        reference = env[name].value_from.secret_key_ref
        assert (reference.name, reference.key) == (SECRET, name)
        # A missing required credential stops the pod before it starts, not the run in its middle.
        assert reference.optional is (None if name in REQUIRED_VARIABLES else True), name
    for name in env.keys() & (CONTRACT_VARIABLES - CREDENTIAL_VARIABLES):
        assert env[name].value, name
    password = env["DAGSTER_PG_PASSWORD"].value_from.secret_key_ref
    assert (password.name, password.key) == (release.postgresql_secret_name, "postgresql-password")


def test_a_run_pod_sees_the_environment_of_its_code_server(release, run_pod):
    code_server_env = {
        variable["name"]: variable for variable in release.user_deployment(CODE_LOCATION)["env"]
    }
    run_env = {name: variable for name, variable in run_pod.env.items() if name not in DAGSTER_VARIABLES}

    assert run_env.keys() == code_server_env.keys()
    for name, variable in run_env.items():
        expected = code_server_env[name]
        if "value" in expected:
            assert variable.value == expected["value"], name
        else:
            reference = expected["valueFrom"]["secretKeyRef"]
            assert variable.value_from.secret_key_ref.name == reference["name"], name
            assert variable.value_from.secret_key_ref.key == reference["key"], name


def test_a_run_pod_is_sized_for_a_table_load(run_pod):
    resources = run_pod.container.resources
    assert resources.requests == {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "20Gi"}
    assert resources.limits == {"cpu": "2", "memory": "1Gi", "ephemeral-storage": "24Gi"}
    memory_limit_mib = int(resources.limits["memory"].removesuffix("Gi")) * 1024
    assert memory_limit_mib >= 2 * LOADER_PEAK_RSS_MIB


def test_a_run_pod_is_labelled_with_its_run_job_and_code_location(release, run_pod):
    expected = {
        "dagster/run-id": run_pod.run.run_id,
        "dagster/job": JOB_NAME,
        "dagster/code-location": CODE_LOCATION,
        "app.kubernetes.io/component": "run_worker",
        # The same selector as the code servers' pods (a NetworkPolicy towards the DWH).
        **release.user_deployment(CODE_LOCATION)["labels"],
    }
    for labels in (run_pod.job.metadata.labels, run_pod.job.spec.template.metadata.labels):
        assert {key: labels.get(key) for key in expected} == expected


def test_with_its_config_included_in_runs_a_code_server_would_impose_its_own_resources(
    release: ChartRelease, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Why the values turn ``includeConfigInLaunchedRuns`` off: the chart then hands the code
    server's deployment settings to its runs, and its ``resources`` win over the run launcher's."""
    values: dict[str, Any] = copy.deepcopy(dict(release.values))
    [deployment] = [
        d for d in values["dagster-user-deployments"]["deployments"] if d["name"] == CODE_LOCATION
    ]
    deployment["includeConfigInLaunchedRuns"] = {"enabled": True}

    run_pod = launch_run_pod(ChartRelease(values), tmp_path, monkeypatch)

    code_server_requests: Mapping[str, str] = deployment["resources"]["requests"]
    run_launcher_requests = values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]["requests"]
    assert {name: run_launcher_requests[name] for name in code_server_requests} != code_server_requests
    requests = run_pod.container.resources.requests
    assert {name: requests[name] for name in code_server_requests} == code_server_requests
