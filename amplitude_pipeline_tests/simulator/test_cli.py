"""``python -m amplitude_simulator``: start-up line, env credentials, clean shutdown."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

ENV_KEY = "cli-api-key"
ENV_SECRET = "cli-secret-never-printed"


@pytest.fixture
def simulator_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {**os.environ, "AMPLITUDE_API_KEY": ENV_KEY, "AMPLITUDE_SECRET_KEY": ENV_SECRET}
    command = [
        sys.executable, "-m", "amplitude_simulator", "--port", "0", "--users", "10",
        "--events-per-day", "50", "--empty-day", "2024-01-09", "--too-much-data-hours-over", "24",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        assert ready, "the simulator did not announce itself"
        line = process.stdout.readline()
        match = re.fullmatch(r"amplitude simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_cli_serves_with_env_credentials_and_stops_on_sigterm(
    simulator_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, base_url = simulator_process
    url = f"{base_url}/api/2/export"
    day = {"start": "20240108T00", "end": "20240108T23"}
    assert requests.get(url, params=day, auth=(ENV_KEY, ENV_SECRET), timeout=30).status_code == 200
    assert (
        requests.get(url, params=day, auth=("sim-api-key", "sim-secret-key"), timeout=30).status_code == 401
    )
    empty = {"start": "20240109T00", "end": "20240109T23"}
    assert requests.get(url, params=empty, auth=(ENV_KEY, ENV_SECRET), timeout=30).status_code == 404
    two_days = {"start": "20240108T00", "end": "20240109T23"}
    assert requests.get(url, params=two_days, auth=(ENV_KEY, ENV_SECRET), timeout=30).status_code == 400

    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert ENV_SECRET not in stdout + stderr
    assert "GET /api/2/export?start=20240108T00" in stderr  # requests are logged, secrets are not


def test_cli_help_does_not_reveal_env_secrets() -> None:
    env = {**os.environ, "AMPLITUDE_SECRET_KEY": ENV_SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "amplitude_simulator", "--help"],
        env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert "--empty-day" in result.stdout
    assert ENV_SECRET not in result.stdout
