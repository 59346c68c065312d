"""Too much data (400 "exceeds 4GB", 504): windows split in halves down to one hour."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator

import pytest

from amplitude_pipeline.amplitude.client import AmplitudeTooMuchDataError
from amplitude_pipeline_tests.amplitude.support import (
    API_KEY,
    CONFIG,
    DAY,
    SECRET_KEY,
    day_content,
    decompressed,
    make_client,
    windows,
)
from amplitude_simulator import Fault, SimulatorConfig, SimulatorServer


def serve(config: SimulatorConfig) -> Iterator[SimulatorServer]:
    with SimulatorServer(config, api_key=API_KEY, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def _six_hour_limit_server() -> Iterator[SimulatorServer]:
    yield from serve(dataclasses.replace(CONFIG, too_much_data_hours_over=6))


@pytest.fixture(scope="module")
def _blocked_hour_server() -> Iterator[SimulatorServer]:
    yield from serve(dataclasses.replace(CONFIG, too_much_data_hours=frozenset({(DAY, 13)})))


@pytest.fixture
def six_hour_limit_server(_six_hour_limit_server: SimulatorServer) -> SimulatorServer:
    """Answers 400 "exceeds 4GB" to any window longer than 6 hours."""
    _six_hour_limit_server.clear_requests()
    return _six_hour_limit_server


@pytest.fixture
def blocked_hour_server(_blocked_hour_server: SimulatorServer) -> SimulatorServer:
    """Answers 400 "exceeds 4GB" to any window containing 13:00 of DAY, even that hour alone."""
    _blocked_hour_server.clear_requests()
    return _blocked_hour_server


def test_too_large_day_is_split_into_halves_down_to_the_limit(
    six_hour_limit_server: SimulatorServer, sleeps: list[float]
) -> None:
    make_client(six_hour_limit_server, sleeps).export_day(DAY, io.BytesIO())

    assert windows(six_hour_limit_server) == [
        ("20240108T00", "20240108T23", 400),
        ("20240108T00", "20240108T11", 400),
        ("20240108T00", "20240108T05", 200),
        ("20240108T06", "20240108T11", 200),
        ("20240108T12", "20240108T23", 400),
        ("20240108T12", "20240108T17", 200),
        ("20240108T18", "20240108T23", 200),
    ]
    assert sleeps == []  # splitting is not a retry


def test_split_day_still_yields_exactly_the_days_bytes(
    six_hour_limit_server: SimulatorServer, sleeps: list[float]
) -> None:
    out = io.BytesIO()

    result = make_client(six_hour_limit_server, sleeps).export_day(DAY, out)

    assert decompressed(out) == day_content(CONFIG, DAY)
    assert result.requests == 7
    assert result.windows == [
        "2024-01-08 00:00–05:59 UTC",
        "2024-01-08 06:00–11:59 UTC",
        "2024-01-08 12:00–17:59 UTC",
        "2024-01-08 18:00–23:59 UTC",
    ]


def test_an_hour_too_large_by_itself_fails_naming_the_hour_and_s3_export(
    blocked_hour_server: SimulatorServer, sleeps: list[float]
) -> None:
    with pytest.raises(AmplitudeTooMuchDataError) as raised:
        make_client(blocked_hour_server, sleeps).export_day(DAY, io.BytesIO())

    message = str(raised.value)
    assert "2024-01-08 13:00 UTC" in message
    assert "Amazon S3 export" in message
    assert windows(blocked_hour_server)[-1] == ("20240108T13", "20240108T13", 400)


def test_a_too_large_hour_is_only_reported_after_narrowing_to_it(
    blocked_hour_server: SimulatorServer, sleeps: list[float]
) -> None:
    with pytest.raises(AmplitudeTooMuchDataError):
        make_client(blocked_hour_server, sleeps).export_day(DAY, io.BytesIO())

    assert windows(blocked_hour_server) == [
        ("20240108T00", "20240108T23", 400),
        ("20240108T00", "20240108T11", 200),
        ("20240108T12", "20240108T23", 400),
        ("20240108T12", "20240108T17", 400),
        ("20240108T12", "20240108T14", 400),
        ("20240108T12", "20240108T12", 200),
        ("20240108T13", "20240108T14", 400),
        ("20240108T13", "20240108T13", 400),
    ]


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.gateway_timeout(), 504), (Fault.too_large(), 400)],
    ids=["504", "400"],
)
def test_too_much_data_fault_splits_the_day_in_two(
    server: SimulatorServer, sleeps: list[float], fault: Fault, status: int
) -> None:
    server.add_faults(fault)
    out = io.BytesIO()

    make_client(server, sleeps).export_day(DAY, out)

    assert windows(server) == [
        ("20240108T00", "20240108T23", status),
        ("20240108T00", "20240108T11", 200),
        ("20240108T12", "20240108T23", 200),
    ]
    assert decompressed(out) == day_content(CONFIG, DAY)
