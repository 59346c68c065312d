"""The simulator server shared by this package's HTTP tests (the root conftest's ``server`` resets it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amplitude_pipeline_tests.simulator.support import API_KEY, SECRET_KEY, SERVER_CONFIG
from amplitude_simulator.server import SimulatorServer


@pytest.fixture(scope="package")
def shared_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SERVER_CONFIG, api_key=API_KEY, secret_key=SECRET_KEY) as server:
        yield server
