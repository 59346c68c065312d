"""A Prometheus server for alert-rule tests: it scrapes a Pushgateway and evaluates rule files.

::

    with prometheus_server(tmp_path / "prometheus", pushgateway_url, [rules_file]) as prometheus:
        push(gauge=1)
        prometheus.wait_until_firing("SomethingIsWrong")
        push(gauge=0)
        prometheus.wait_until_absent("SomethingIsWrong")

Tests take the ``start_prometheus`` fixture (``amplitude_pipeline_tests/conftest.py``), which
points it at the local stack's Pushgateway and stops it after the test.

The server is Debian's ``/usr/bin/prometheus`` (``scripts/bootstrap.sh`` installs it), on a free
loopback port, with its own TSDB under ``directory``. It scrapes the Pushgateway and evaluates
the rules every second, so an alert without ``for:`` fires within about two seconds of the
push that makes its expression true, and leaves ``/api/v1/alerts`` as fast once it is false
again (resolved alerts are not listed there); a rule's ``for:`` adds to that, and the waits'
``timeout`` must cover it. Starting takes about 6 s: Prometheus applies new scrape targets
every 5 s, and the server is handed over only once it has scraped the Pushgateway.
``honor_labels: true`` keeps the pushed ``job`` and ``instance`` labels, as a Pushgateway's
scrape config must.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit
from urllib.request import urlopen

import yaml

from amplitude_pipeline_tests.support import closed_port

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Sample:
    """One series of an instant query's result."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Alert:
    """An active alert, as ``/api/v1/alerts`` lists it."""

    name: str
    state: str  # "pending" (its ``for:`` has not elapsed yet) or "firing"
    labels: dict[str, str]
    annotations: dict[str, str]
    value: float


@dataclass(frozen=True)
class PrometheusServer:
    """A running server's HTTP API (``base_url``), and the log it writes to."""

    base_url: str
    log_file: Path

    def get(self, path: str, **parameters: str) -> Any:
        """The ``data`` of an API answer; an error answer raises with Prometheus's message."""
        url = f"{self.base_url}{path}" + (f"?{urlencode(parameters)}" if parameters else "")
        try:
            with urlopen(url, timeout=5) as response:
                return json.load(response)["data"]
        except HTTPError as error:  # e.g. 400 for a query that does not parse; the body says why
            raise AssertionError(
                f"Prometheus GET {path} {parameters}: {error.code} {error.read().decode(errors='replace')}"
            ) from None

    def query(self, expression: str) -> list[Sample]:
        """The instant query's series now (a scalar result is one sample without labels)."""
        data = self.get("/api/v1/query", query=expression)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise AssertionError(f"{expression!r} is a {data['resultType']}, not an instant vector")
        return [Sample(series["metric"], float(series["value"][1])) for series in data["result"]]

    def alerts(self) -> list[Alert]:
        """The pending and firing alerts now."""
        return [
            Alert(
                name=alert["labels"]["alertname"],
                state=alert["state"],
                labels=alert["labels"],
                annotations=alert.get("annotations", {}),
                value=float(alert["value"]),
            )
            for alert in self.get("/api/v1/alerts")["alerts"]
        ]

    def named(self, name: str, labels: Mapping[str, str] | None = None) -> list[Alert]:
        """The active alerts named ``name`` whose labels include ``labels``."""
        wanted = (labels or {}).items()
        return [alert for alert in self.alerts() if alert.name == name and wanted <= alert.labels.items()]

    def wait_until_firing(
        self, name: str, timeout: float = 30.0, labels: Mapping[str, str] | None = None
    ) -> list[Alert]:
        """The firing alerts named ``name`` (with ``labels``), as soon as there is one;
        AssertionError after ``timeout`` seconds, saying what the rule and the server show instead."""
        deadline = time.monotonic() + timeout
        while True:
            named = self.named(name, labels)
            firing = [alert for alert in named if alert.state == "firing"]
            if firing:
                return firing
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"alert {name} is not firing after {timeout} s; "
                    f"its active alerts: {named or 'none'}; {self.describe_rule(name)}"
                )
            time.sleep(POLL_SECONDS)

    def wait_until_absent(
        self, name: str, timeout: float = 30.0, labels: Mapping[str, str] | None = None
    ) -> None:
        """Returns once no alert named ``name`` (with ``labels``) is pending or firing;
        AssertionError after ``timeout`` seconds, listing those still active."""
        deadline = time.monotonic() + timeout
        while True:
            named = self.named(name, labels)
            if not named:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"alert {name} is still active after {timeout} s: {named}; {self.describe_rule(name)}"
                )
            time.sleep(POLL_SECONDS)

    def describe_rule(self, name: str) -> str:
        """The alerting rule ``name`` as the server evaluates it (its query, health and last
        error), or which rules it has instead: for failure messages."""
        groups = self.get("/api/v1/rules", type="alert")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        matching = [rule for rule in rules if rule["name"] == name]
        if not matching:
            return f"no alerting rule {name} is loaded (loaded: {sorted(rule['name'] for rule in rules)})"
        return "; ".join(
            f"rule {name}: {rule['query']!r}, health {rule['health']}"
            + (f", last error {rule['lastError']!r}" if rule.get("lastError") else "")
            for rule in matching
        )


def write_config(directory: Path, pushgateway_url: str, rule_files: Sequence[Path]) -> Path:
    """prometheus.yml: the Pushgateway scraped and the rules evaluated every second."""
    missing = [str(path) for path in rule_files if not path.is_file()]
    if missing:
        # Prometheus reads rule_files as globs: a path that matches nothing loads no rule, silently.
        raise FileNotFoundError(f"rule files not found: {missing}")
    gateway = urlsplit(pushgateway_url)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path.resolve()) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "scheme": gateway.scheme or "http",
                "static_configs": [{"targets": [_host_and_port(pushgateway_url)]}],
                **(
                    {"basic_auth": {"username": gateway.username, "password": gateway.password or ""}}
                    if gateway.username
                    else {}
                ),
            }
        ],
    }
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return config_file


@contextmanager
def prometheus_server(
    directory: Path, pushgateway_url: str, rule_files: Sequence[Path] = (), startup_timeout: float = 30.0
) -> Iterator[PrometheusServer]:
    """A Prometheus server scraping ``pushgateway_url`` and evaluating ``rule_files``, stopped
    when the block ends. Its config, TSDB and log go under ``directory`` (created).

    Raises if the binary is missing, if the server exits or is not ready within
    ``startup_timeout`` seconds (with the end of its log: a rule file that does not parse ends
    here), or if its first scrapes of the Pushgateway fail.
    """
    if not os.access(PROMETHEUS_BINARY, os.X_OK):
        raise RuntimeError(f"{PROMETHEUS_BINARY} not found: run scripts/bootstrap.sh (Debian's 'prometheus')")
    directory.mkdir(parents=True, exist_ok=True)
    config_file = write_config(directory, pushgateway_url, rule_files)
    tsdb = directory / "tsdb"
    port = closed_port()
    log_file = directory / "prometheus.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(PROMETHEUS_BINARY),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", log_file)
    try:
        _wait_until_ready(server, process, tsdb, startup_timeout)
        _wait_until_scraping(server, pushgateway_url, startup_timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _host_and_port(url: str) -> str:
    """The URL's address without the credentials it may hold (never shown)."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _log_errors(log_file: Path) -> str:
    """The log's error lines (the reason, e.g. a rule that does not parse), else its last lines."""
    lines = log_file.read_text(errors="replace").splitlines()
    return "\n".join([line for line in lines if "level=error" in line] or lines[-10:])


def _wait_until_ready(
    server: PrometheusServer, process: subprocess.Popen[bytes], tsdb: Path, timeout: float
) -> None:
    """Until ``/-/ready`` answers and the server answering is this one (its TSDB is ``tsdb``):
    another process could have taken the port after closed_port released it."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited ({process.returncode}) before it was ready; from "
                f"{server.log_file}:\n{_log_errors(server.log_file)}"
            )
        try:
            with urlopen(f"{server.base_url}/-/ready", timeout=2) as response:
                ready = response.status == 200
        except (URLError, ConnectionError):
            ready = False
        if ready:
            break
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"prometheus was not ready within {timeout} s; from {server.log_file}:\n"
                f"{_log_errors(server.log_file)}"
            )
        time.sleep(POLL_SECONDS)
    serving = server.get("/api/v1/status/flags")["storage.tsdb.path"]
    if process.poll() is not None or Path(serving) != tsdb:
        raise RuntimeError(f"{server.base_url} is another server (TSDB {serving}), not the one started")


def _wait_until_scraping(server: PrometheusServer, pushgateway_url: str, timeout: float) -> None:
    """Until the Pushgateway's target is up: an alert test that cannot scrape would only time out.
    (The first scrape comes about 5 s after the start: Prometheus applies new targets every 5 s.)"""
    deadline = time.monotonic() + timeout
    while True:
        targets = server.get("/api/v1/targets", state="active")["activeTargets"]
        if any(target["health"] == "up" for target in targets):
            return
        if time.monotonic() >= deadline:
            errors = [target.get("lastError") or target["health"] for target in targets]
            raise RuntimeError(
                f"prometheus cannot scrape the Pushgateway at {_host_and_port(pushgateway_url)}: "
                f"{errors or 'no target'}"
            )
        time.sleep(POLL_SECONDS)


#: The ``start_prometheus`` fixture: ``start_prometheus(rule_files)`` starts a server.
StartPrometheus = Callable[[Sequence[Path]], PrometheusServer]
