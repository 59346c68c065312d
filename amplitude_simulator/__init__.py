"""A deterministic simulator of Amplitude's Export API, for the demo and integration tests.

* :mod:`amplitude_simulator.data` — the simulated project's events (pure, deterministic).
* :mod:`amplitude_simulator.archive` — the zip-of-gzip response body.
* :mod:`amplitude_simulator.server` — the HTTP server, with injectable faults.
* ``python -m amplitude_simulator`` — run it as a process.
"""

from amplitude_simulator.data import (
    HourFile,
    SimulatorConfig,
    day_files,
    expected_lines,
    expected_week_lines,
    population,
)
from amplitude_simulator.server import Fault, FaultKind, RequestRecord, SimulatorServer

__all__ = [
    "Fault",
    "FaultKind",
    "HourFile",
    "RequestRecord",
    "SimulatorConfig",
    "SimulatorServer",
    "day_files",
    "expected_lines",
    "expected_week_lines",
    "population",
]
