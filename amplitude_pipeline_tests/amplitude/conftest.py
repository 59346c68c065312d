"""One simulator server shared by this package's tests (``server``, in the root conftest, resets it per test)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amplitude_pipeline_tests.amplitude.support import API_KEY, CONFIG, SECRET_KEY
from amplitude_simulator import SimulatorServer


@pytest.fixture(scope="package")
def shared_server() -> Iterator[SimulatorServer]:
    with SimulatorServer(CONFIG, api_key=API_KEY, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """The delays the client asked for, recorded instead of slept."""
    return []
