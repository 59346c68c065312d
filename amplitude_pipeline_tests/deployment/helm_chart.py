"""What the Dagster Helm chart 1.13 makes of deploy/helm/values.yaml, for tests without a cluster.

The chart itself cannot run here (no Helm, no chart download), so the few template pieces that the
tests need are transcribed from the chart's sources, key for key:

- ``instance_sections``: the parts of ``templates/configmap-instance.yaml`` (dagster.yaml) that
  the values set — ``run_coordinator`` (``helpers/instance/_run-coordinator.tpl``, with no
  coordinator value set), ``concurrency`` (``helpers/instance/_concurrency.tpl``), ``run_monitoring``,
  ``run_retries``, ``sensors``, ``schedules``, ``retention``, ``telemetry``, ``compute_logs``
  (S3) — and ``additionalInstanceConfig``, which the chart appends at the end;
- ``k8s_run_launcher_config``: ``dagsterYaml.runLauncher.k8s`` (``helpers/instance/_run-launcher.tpl``);
- ``code_server_container_context``: ``dagsterUserDeployments.k8sContainerContext``, what a code
  server hands its runs when its deployment has ``includeConfigInLaunchedRuns`` on;
- ``image``: ``dagster.dagsterImage.name``; ``code_server_args``: the user deployment's ``args``.

Values the file leaves out take the chart's defaults in ``CHART_DEFAULTS``: only those read here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amplitude_pipeline_tests.support import REPO_ROOT

HELM_VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"
CHART_VERSION = "1.13.27"

# The chart's values.yaml defaults that the transcriptions below read when the file is silent.
CHART_DEFAULTS: Mapping[str, Any] = {
    "dagsterHome": "/opt/dagster/dagster_home",
    "loadInclusterConfig": True,
    "includeConfigInLaunchedRuns": True,
    "telemetryEnabled": True,
}


def load_values(path: Path = HELM_VALUES) -> dict[str, Any]:
    """The values as Helm reads them: YAML aliases resolved to their anchors' content."""
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path}: not a mapping of values"
    return values


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True)
class ChartRelease:
    """One ``helm install`` of the chart: its values, release name and namespace."""

    values: Mapping[str, Any]
    release_name: str = "dagster"
    namespace: str = "amplitude"

    @property
    def fullname(self) -> str:
        """``dagster.fullname``: the release name alone when it contains the chart's name."""
        return self.release_name if "dagster" in self.release_name else f"{self.release_name}-dagster"

    @property
    def service_account_name(self) -> str:
        """``dagster.serviceAccountName``, which the global name also gives the user deployments."""
        global_values = self.values.get("global", {})
        return (
            global_values.get("serviceAccountName")
            or self.values.get("serviceAccount", {}).get("name")
            or self.fullname
        )

    @property
    def postgresql_secret_name(self) -> str:
        return (
            self.values.get("global", {}).get("postgresqlSecretName") or f"{self.fullname}-postgresql-secret"
        )

    @property
    def dagster_home(self) -> str:
        return self.values.get("global", {}).get("dagsterHome") or CHART_DEFAULTS["dagsterHome"]

    def user_deployment(self, name: str) -> Mapping[str, Any]:
        deployments = self.values["dagster-user-deployments"]["deployments"]
        [deployment] = [deployment for deployment in deployments if deployment["name"] == name]
        return deployment

    @staticmethod
    def image(deployment: Mapping[str, Any]) -> str:
        return f"{deployment['image']['repository']}:{deployment['image']['tag']}"

    @staticmethod
    def code_server_args(deployment: Mapping[str, Any]) -> list[str]:
        port = str(deployment["port"])
        if deployment.get("dagsterApiGrpcArgs"):
            return ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", port, *deployment["dagsterApiGrpcArgs"]]
        return ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", port, *deployment["codeServerArgs"]]

    def code_server_container_context(self, deployment: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ``--container-context`` the chart gives the code server, or None when it gives none."""
        include = deployment.get("includeConfigInLaunchedRuns") or {
            "enabled": CHART_DEFAULTS["includeConfigInLaunchedRuns"]
        }
        if not include["enabled"]:
            return None
        k8s: dict[str, Any] = {
            "image_pull_policy": deployment["image"]["pullPolicy"],
            "env_config_maps": [
                f"{self.fullname}-{deployment['name']}-user-env",
                *(config_map["name"] for config_map in deployment.get("envConfigMaps") or []),
            ],
            "namespace": self.namespace,
            "service_account_name": self.service_account_name,
        }
        if self.values.get("imagePullSecrets"):
            k8s["image_pull_secrets"] = self.values["imagePullSecrets"]
        if deployment.get("envSecrets"):
            k8s["env_secrets"] = [secret["name"] for secret in deployment["envSecrets"]]
        for value_name, context_name in (
            ("volumeMounts", "volume_mounts"),
            ("volumes", "volumes"),
            ("labels", "labels"),
            ("resources", "resources"),
            ("schedulerName", "scheduler_name"),
        ):
            if deployment.get(value_name):
                k8s[context_name] = deployment[value_name]
        if isinstance(deployment.get("env"), list) and deployment["env"]:
            k8s["env"] = deployment["env"]
        return {"k8s": k8s}

    def k8s_run_launcher_config(self) -> dict[str, Any]:
        """The ``config`` of the instance's ``run_launcher`` (module dagster_k8s, K8sRunLauncher)."""
        assert self.values["runLauncher"]["type"] == "K8sRunLauncher"
        launcher = self.values["runLauncher"]["config"]["k8sRunLauncher"]
        config: dict[str, Any] = {
            "load_incluster_config": launcher.get(
                "loadInclusterConfig", CHART_DEFAULTS["loadInclusterConfig"]
            ),
            "job_namespace": launcher.get("jobNamespace") or self.namespace,
            "image_pull_policy": launcher["imagePullPolicy"],
            "service_account_name": self.service_account_name,
            "dagster_home": self.dagster_home,
            "instance_config_map": f"{self.fullname}-instance",
            "postgres_password_secret": self.postgresql_secret_name,
        }
        if launcher.get("kubeconfigFile"):
            config["kubeconfig_file"] = launcher["kubeconfigFile"]
        if self.values.get("imagePullSecrets"):
            config["image_pull_secrets"] = self.values["imagePullSecrets"]
        if "image" in launcher:
            config["job_image"] = f"{launcher['image']['repository']}:{launcher['image']['tag']}"
        if launcher.get("envConfigMaps"):
            config["env_config_maps"] = [config_map["name"] for config_map in launcher["envConfigMaps"]]
        if launcher.get("envSecrets"):
            config["env_secrets"] = [secret["name"] for secret in launcher["envSecrets"]]
        for value_name in ("envVars", "volumeMounts", "volumes", "labels", "resources", "securityContext"):
            if launcher.get(value_name):
                config[snake_case(value_name)] = launcher[value_name]
        if launcher.get("failPodOnRunFailure"):
            config["fail_pod_on_run_failure"] = True
        if launcher.get("schedulerName"):
            config["scheduler_name"] = launcher["schedulerName"]
        run_k8s_config = launcher.get("runK8sConfig") or {}
        if run_k8s_config:
            config["run_k8s_config"] = {
                snake_case(part): content for part, content in run_k8s_config.items() if content
            }
        return config

    def instance_sections(self) -> dict[str, Any]:
        """The dagster.yaml sections these values write (storage, scheduler, launcher aside).

        A section that both the chart and ``additionalInstanceConfig`` write would appear twice in
        the YAML the chart renders, the later silently winning: that is an error here.
        """
        values = self.values
        daemon = values.get("dagsterDaemon", {})
        daemon_enabled = daemon.get("enabled", True)
        sections: dict[str, Any] = {}

        coordinator = daemon.get("runCoordinator", {})
        if daemon_enabled and coordinator.get("enabled"):
            assert coordinator["type"] == "QueuedRunCoordinator"
            queued = coordinator.get("config", {}).get("queuedRunCoordinator") or {}
            sections["run_coordinator"] = {
                "module": "dagster.core.run_coordinator",
                "class": "QueuedRunCoordinator",
                **({"config": {snake_case(name): value for name, value in queued.items()}} if queued else {}),
            }

        concurrency = values.get("concurrency", {})
        if concurrency.get("enabled"):
            rendered: dict[str, Any] = {}
            pools = concurrency.get("pools", {})
            pool_section = {
                snake_case(name): pools[name]
                for name in ("defaultLimit", "granularity", "opGranularityRunBuffer")
                if pools.get(name) is not None
            }
            if pool_section:
                rendered["pools"] = pool_section
            runs = concurrency.get("runs", {})
            run_section: dict[str, Any] = {}
            if runs.get("maxConcurrentRuns") is not None:
                run_section["max_concurrent_runs"] = runs["maxConcurrentRuns"]
            if runs.get("tagConcurrencyLimits"):
                run_section["tag_concurrency_limits"] = [
                    {"key": limit["key"], **({"value": limit["value"]} if limit.get("value") else {})}
                    | {"limit": limit["limit"]}
                    for limit in runs["tagConcurrencyLimits"]
                ]
            if run_section:
                rendered["runs"] = run_section
            sections["concurrency"] = rendered

        monitoring = daemon.get("runMonitoring", {})
        if daemon_enabled and monitoring.get("enabled"):
            # The template knows these values only (no max_runtime_seconds).
            sections["run_monitoring"] = {
                snake_case(name): monitoring[name]
                for name in (
                    "enabled",
                    "startTimeoutSeconds",
                    "cancelTimeoutSeconds",
                    "maxResumeRunAttempts",
                    "pollIntervalSeconds",
                    "freeSlotsAfterRunEndSeconds",
                )
                if monitoring.get(name) is not None
            }
        retries = daemon.get("runRetries", {})
        if daemon_enabled and retries.get("enabled"):
            sections["run_retries"] = {
                "enabled": True,
                **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {}),
            }
        for name in ("sensors", "schedules"):
            threads = daemon.get(name, {})
            if daemon_enabled and threads.get("useThreads"):
                sections[name] = {
                    snake_case(key): threads[key]
                    for key in ("useThreads", "numWorkers", "numSubmitWorkers")
                    if threads.get(key)
                }

        sections["telemetry"] = {
            "enabled": values.get("telemetry", {}).get("enabled", CHART_DEFAULTS["telemetryEnabled"])
        }
        retention = values.get("retention", {})
        if retention.get("enabled"):
            sections["retention"] = {
                snake_case(kind): {"purge_after_days": retention[kind]["purgeAfterDays"]}
                for kind in ("sensor", "schedule", "autoMaterialize")
                if retention.get(kind)
            }

        compute_logs = values.get("computeLogManager", {})
        if compute_logs.get("type") == "S3ComputeLogManager":
            s3_config = compute_logs["config"]["s3ComputeLogManager"]
            sections["compute_logs"] = {
                "module": "dagster_aws.s3.compute_log_manager",
                "class": "S3ComputeLogManager",
                "config": {snake_case(name): value for name, value in s3_config.items() if value is not None},
            }

        additional = values.get("additionalInstanceConfig") or {}
        written_twice = sorted(set(sections) & set(additional))
        assert not written_twice, (
            f"{HELM_VALUES}: additionalInstanceConfig repeats the section(s) {written_twice} that the "
            "chart writes from other values; the rendered dagster.yaml would hold both"
        )
        return sections | dict(additional)


def local_instance_config(release: ChartRelease, directory: Path) -> dict[str, Any]:
    """The dagster.yaml the chart writes, loadable on this machine: SQLite in ``directory`` for
    Dagster's own storage (the chart's is PostgreSQL), and the run launcher's Kubernetes client
    configured from a kubeconfig there instead of a pod's service account. The client is only
    ever built: nothing here calls the API server it names."""
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "absent", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "absent", "user": {"token": "unused"}}],
                "contexts": [{"name": "absent", "context": {"cluster": "absent", "user": "absent"}}],
                "current-context": "absent",
            }
        )
    )
    launcher_config = release.k8s_run_launcher_config() | {
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    return release.instance_sections() | {
        "storage": {"sqlite": {"base_dir": str(directory / "storage")}},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
    }
