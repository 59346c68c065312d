"""The production instance (deploy/dagster.yaml) on the local stack, and its processes.

``fresh_dagster_database`` gives the instance a database of its own on the stack's PostgreSQL
(dropped afterwards), so that nothing here touches the dev instance. ``Topology`` starts the
deployment's processes — a code server, ``dagster-webserver``, ``dagster-daemon`` — each in a
process group of its own with its output in a log file, and stops every process that carries
its marker, however deep it was started (run workers are children of the code server).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRun
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.events import DagsterEventType
from dagster._grpc.client import DagsterGrpcClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from amplitude_pipeline.retries import retrying
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import SIM_API_KEY, SIM_SECRET_KEY, SMALL_WEEK
from amplitude_pipeline_tests.support import REPO_ROOT, stack_s3_client
from amplitude_simulator import SimulatorConfig, SimulatorServer

DEPLOY_INSTANCE = REPO_ROOT / "deploy" / "dagster.yaml"
LOCATION_NAME = "amplitude_pipeline"
REPOSITORY_NAME = "__repository__"
BIN = Path(sys.executable).parent
# Every process a Topology starts, and every process those start, inherits this variable:
# teardown finds them all by it, also the ones that left their parent's process group.
_MARKER = "AMPLITUDE_PIPELINE_TOPOLOGY_ID"
T = TypeVar("T")


def dagster_pg_url() -> str:
    url = os.environ.get("DAGSTER_PG_URL")
    if not url:
        message = "DAGSTER_PG_URL missing (the local stack's Dagster database): run scripts/test.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@contextmanager
def fresh_dagster_database() -> Iterator[dict[str, str]]:
    """A new, empty database on the stack's PostgreSQL, as deploy/dagster.yaml's DAGSTER_PG_* variables."""
    server = make_url(dagster_pg_url())
    name = f"dagster_test_{uuid.uuid4().hex[:12]}"
    # A connection of its own for each statement: the server may have restarted in between (the
    # fault tests restart it), and the database must be dropped all the same.
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def execute(statement: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(statement))

    transient = retrying(f"the test database {name}", lambda error: isinstance(error, OperationalError))
    transient(execute, f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DAGSTER_PG_HOST": server.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(server.port or 5432),
            "DAGSTER_PG_USER": server.username or "",
            "DAGSTER_PG_PASSWORD": server.password or "",
            "DAGSTER_PG_DB": name,
        }
    finally:
        transient(execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def instance_home(directory: Path) -> Path:
    """A DAGSTER_HOME holding the production dagster.yaml, as a deployment would ship it."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEPLOY_INSTANCE, directory / "dagster.yaml")
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, describe: Callable[[], str]) -> T:
    """Poll ``probe`` every second until it returns something, or fail with ``describe()``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{describe()}")
        time.sleep(1)


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Topology:
    """The deployment's processes on this machine, sharing one DAGSTER_HOME and environment."""

    home: Path
    logs: Path
    env: Mapping[str, str]
    grpc_port: int = field(default_factory=free_port)
    webserver_port: int = field(default_factory=free_port)
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)
    processes: list[_Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.webserver_port}"

    @property
    def workspace(self) -> Path:
        return self.home / "workspace.yaml"

    def start(self, *, daemon: bool = True) -> None:
        self.workspace.write_text(
            "load_from:\n"
            "  - grpc_server:\n"
            "      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n"
            f"      location_name: {LOCATION_NAME}\n",
            encoding="utf-8",
        )
        self.start_code_server()
        self._spawn(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.webserver_port),
                "-w",
                str(self.workspace),
            ],
        )
        if daemon:
            self.start_daemon()

    def start_daemon(self) -> None:
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)])

    def stop_daemon(self) -> None:
        """SIGTERM, as a deployment stops it (it finishes its current iteration)."""
        self._stop("daemon", signal.SIGTERM)

    def kill_code_server(self) -> None:
        """SIGKILL to the code server's process group: the server and the runs it started die at
        once, as when their machine or container goes away."""
        self._stop("code-server", signal.SIGKILL)

    def start_code_server(self) -> None:
        self._spawn(
            "code-server",
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-m",
                "amplitude_pipeline",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.grpc_port),
                "--location-name",
                LOCATION_NAME,
            ],
        )
        # The webserver and the daemon find the location loaded, as after a rolling deploy.
        self._wait_for_code_server()

    def _stop(self, name: str, sig: signal.Signals) -> None:
        for process in self.processes:
            if process.name == name and process.popen.poll() is None:
                _signal_group(process.popen.pid, sig)
                process.popen.wait(timeout=60)
        self.processes = [process for process in self.processes if process.name != name]

    def cli(self, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A ``dagster`` CLI command against this deployment's instance, as an operator runs it."""
        return subprocess.run(
            [str(BIN / "dagster"), *arguments],
            cwd=self.home,
            env={**self.env, "DAGSTER_HOME": str(self.home), _MARKER: self.marker},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                command,
                cwd=self.home,
                env={**self.env, "DAGSTER_HOME": str(self.home), _MARKER: self.marker},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(_Process(name, popen, log))

    def _wait_for_code_server(self, timeout: float = 180) -> None:
        client = DagsterGrpcClient(port=self.grpc_port, host="127.0.0.1")

        def serving() -> bool | None:
            if self.exited():
                pytest.fail(f"the code server died\n{self.log_tails()}")
            try:
                client.list_repositories()
            except DagsterUserCodeUnreachableError:
                return None
            return True

        wait_for("the code server to load amplitude_pipeline", serving, timeout, self.log_tails)

    def stop(self) -> None:
        """SIGTERM to each process group, then SIGKILL to whatever still carries the marker."""
        for process in self.processes:
            if process.popen.poll() is None:
                _signal_group(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)
        for pid in _marked_processes(self.marker):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def exited(self) -> list[str]:
        return [
            f"{process.name} exited with {process.popen.returncode}"
            for process in self.processes
            if process.popen.poll() is not None
        ]

    def log_tails(self, lines: int = 40) -> str:
        """The end of each process's log (and which ones died): for assertion messages."""
        parts = [*self.exited()]
        for process in self.processes:
            content = process.log.read_text(encoding="utf-8", errors="replace").splitlines()
            parts.append(f"----- {process.name} ({process.log}), last {lines} lines")
            parts.extend(content[-lines:])
        return "\n".join(parts)

    # -- the webserver's GraphQL API --------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), f"{body['errors']}\n{self.log_tails()}"
        return dict(body["data"])

    def wait_until_loaded(self, timeout: float = 180) -> None:
        """Until the webserver answers and has loaded the code location from the code server."""

        def loaded() -> bool | None:
            if self.exited():
                pytest.fail(f"a process of the topology died\n{self.log_tails()}")
            try:
                data = self.graphql(_WORKSPACE_QUERY)
            except requests.RequestException:
                return None
            entries = data["workspaceOrError"].get("locationEntries", [])
            for entry in entries:
                if entry["name"] != LOCATION_NAME:
                    continue
                location = entry["locationOrLoadError"]
                if entry["loadStatus"] == "LOADED" and location and location["__typename"] != "PythonError":
                    return True
            return None

        def describe() -> str:
            try:
                workspace = self.graphql(_WORKSPACE_QUERY)
            except requests.RequestException as error:
                workspace = {"error": str(error)}
            return f"workspace: {workspace}\n{self.log_tails()}"

        wait_for("the code location to load in the webserver", loaded, timeout, describe)


_WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment holds ``_MARKER=marker`` (Linux /proc)."""
    needle = f"{_MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@dataclass
class Deployment:
    topology: Topology
    instance: DagsterInstance
    store: RawEventStore
    watched: RawEventStore
    dwh_url: str
    dwh_schema: str
    simulator: SimulatorServer

    def failure_report(self, runs: list[DagsterRun] | None = None) -> str:
        """The processes' log tails and, for each run given, its status and error messages."""
        parts = []
        for run in runs or []:
            parts.append(f"run {run.run_id} ({run.job_name}, {dict(run.tags)}): {run.status}")
            for record in self.instance.all_logs(
                run.run_id,
                of_type={
                    DagsterEventType.STEP_FAILURE,
                    DagsterEventType.RUN_FAILURE,
                    DagsterEventType.ENGINE_EVENT,
                },
            ):
                if record.is_dagster_event and record.dagster_event is not None:
                    parts.append(f"  {record.dagster_event.event_type_value}: {record.dagster_event.message}")
        parts.append(self.topology.log_tails())
        return "\n".join(parts)

    def alive(self) -> None:
        if self.topology.exited():
            pytest.fail(f"a process of the topology died\n{self.failure_report()}")

    def ehr_ids(self, table: str) -> set[str]:
        engine = create_engine(self.dwh_url)
        try:
            with engine.connect() as conn:
                found = conn.execute(text(f'SELECT ehr_id FROM "{self.dwh_schema}"."{table}"')).scalars()
                return {ehr_id for ehr_id in found if ehr_id is not None}
        except ProgrammingError:  # the first load has not created the table yet
            return set()
        finally:
            engine.dispose()

    def materialization_metadata(self, asset: str, week: str) -> tuple[str, dict[str, Any]] | None:
        """(run id, metadata values) of the asset's latest materialization of the week, if any."""
        records = self.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[week]), limit=1
        ).records
        if not records:
            return None
        materialization = records[0].asset_materialization
        assert materialization is not None
        metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
        return records[0].run_id, metadata

    def run(self, run_id: str) -> DagsterRun:
        found = self.instance.get_run_by_id(run_id)
        assert found is not None, run_id
        return found


@contextmanager
def deployed(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    start_week: str,
    simulator: SimulatorConfig = SMALL_WEEK,
    daemon: bool = True,
) -> Iterator[Deployment]:
    """The production topology with the production instance (its own database, S3 prefix and DWH
    schema, a simulator of its own), its weekly partitions starting at ``start_week``; the daemon
    is started only when ``daemon``."""
    root = f"test-topology-{uuid.uuid4().hex[:12]}"
    dwh_schema = f"test_{uuid.uuid4().hex[:12]}"
    directory = tmp_path_factory.mktemp("topology")
    home = instance_home(directory / "dagster_home")
    logs = directory / "logs"
    logs.mkdir()
    s3 = stack_s3_client()
    bucket = os.environ["S3_BUCKET"]
    with (
        SimulatorServer(simulator, api_key=SIM_API_KEY, secret_key=SIM_SECRET_KEY) as server,
        fresh_dagster_database() as database,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        instance_env = {
            **database,
            "DAGSTER_COMPUTE_LOGS_BUCKET": bucket,
            "DAGSTER_COMPUTE_LOGS_PREFIX": f"{root}/compute-logs",
            "AWS_ENDPOINT_URL_S3": os.environ["S3_ENDPOINT_URL"],
        }
        pipeline_env = {
            "AMPLITUDE_EXPORT_URL": server.export_url,
            "AMPLITUDE_API_KEY": SIM_API_KEY,
            "AMPLITUDE_SECRET_KEY": SIM_SECRET_KEY,
            "AMPLITUDE_START_DATE": start_week,
            "S3_PREFIX": f"{root}/events",
            "S3_WATCH_PREFIXES": f"{root}/watched",
            "DWH_SCHEMA": dwh_schema,
            "PYTHONUNBUFFERED": "1",
        }
        inherited = {
            name: value
            for name, value in os.environ.items()
            # Not the dev instance, nor the shared Pushgateway, nor pytest's own settings.
            if name not in {"DAGSTER_HOME", "DAGSTER_PG_URL", "PROMETHEUS_PUSHGATEWAY_URL"}
            and not name.startswith("PYTEST_")
        }
        topology = Topology(home=home, logs=logs, env={**inherited, **instance_env, **pipeline_env})
        # This process reads the same instance: it needs the same variables to load it.
        for name, value in instance_env.items():
            monkeypatch.setenv(name, value)
        instance = DagsterInstance.from_config(str(home))
        try:
            topology.start(daemon=daemon)
            topology.wait_until_loaded()
            yield Deployment(
                topology=topology,
                instance=instance,
                store=RawEventStore(bucket, pipeline_env["S3_PREFIX"], s3),
                watched=RawEventStore(bucket, pipeline_env["S3_WATCH_PREFIXES"], s3),
                dwh_url=os.environ["DWH_URL"],
                dwh_schema=dwh_schema,
                simulator=server,
            )
        finally:
            topology.stop()
            instance.dispose()
            engine = create_engine(os.environ["DWH_URL"])
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{dwh_schema}" CASCADE'))
            engine.dispose()


# -- the webserver's GraphQL operations the tests use ---------------------------------------

LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL_STATUS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}
"""

START_SENSOR = """
mutation ($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status } }
    ... on Error { message }
  }
}
"""

STOP_SENSOR = """
mutation ($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}
"""

LAUNCH_RUN = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""

BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
