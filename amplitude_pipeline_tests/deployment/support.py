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
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._grpc.client import DagsterGrpcClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from amplitude_pipeline.retries import retrying
from amplitude_pipeline_tests.conftest import REPO_ROOT

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

    def start(self) -> None:
        workspace = self.home / "workspace.yaml"
        workspace.write_text(
            "load_from:\n"
            "  - grpc_server:\n"
            "      host: 127.0.0.1\n"
            f"      port: {self.grpc_port}\n"
            f"      location_name: {LOCATION_NAME}\n",
            encoding="utf-8",
        )
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
        self._spawn(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.webserver_port),
                "-w",
                str(workspace),
            ],
        )
        self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
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
