"""A simulator server shared by the HTTP tests of this package (faults and log reset per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amplitude_pipeline_tests.simulator.support import API_KEY, SECRET_KEY, SERVER_CONFIG
from amplitude_simulator.server import SimulatorServer


@pytest.fixture(scope="package")
def shared_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SERVER_CONFIG, api_key=API_KEY, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def server(shared_server: SimulatorServer) -> Iterator[SimulatorServer]:
    shared_server.clear_faults()
    shared_server.clear_requests()
    yield shared_server
    shared_server.clear_faults()
    shared_server.clear_requests()
