"""AmplitudeExportResource builds a client from its configuration."""

from __future__ import annotations

import io

import pytest

from amplitude_pipeline.amplitude.client import AmplitudeExportError
from amplitude_pipeline.defs.resources import AmplitudeExportResource
from amplitude_pipeline_tests.amplitude.support import (
    API_KEY,
    CONFIG,
    DAY,
    SECRET_KEY,
    day_content,
    decompressed,
)
from amplitude_simulator import Fault, SimulatorServer


def resource(server: SimulatorServer, **overrides: object) -> AmplitudeExportResource:
    settings: dict[str, object] = {
        "api_key": API_KEY,
        "secret_key": SECRET_KEY,
        "export_url": server.export_url,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.002,
    }
    settings.update(overrides)
    return AmplitudeExportResource(**settings)  # type: ignore[arg-type]


def test_resource_client_exports_from_the_configured_url(server: SimulatorServer) -> None:
    out = io.BytesIO()

    resource(server).get_client().export_day(DAY, out)

    assert len(server.requests) == 1
    assert decompressed(out) == day_content(CONFIG, DAY)


def test_resource_max_attempts_bounds_the_retries(server: SimulatorServer) -> None:
    server.add_faults(Fault.server_error(count=3))

    with pytest.raises(AmplitudeExportError, match="after 2 attempts"):
        resource(server, max_attempts=2).get_client().export_day(DAY, io.BytesIO())

    assert len(server.requests) == 2


def test_resource_default_url_is_amplitudes_us_endpoint() -> None:
    default = AmplitudeExportResource(api_key=API_KEY, secret_key=SECRET_KEY)

    assert default.export_url == "https://amplitude.com/api/2/export"
