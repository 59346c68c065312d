"""A day through the client against the simulator: exact bytes, order, empty days."""

from __future__ import annotations

import io
from datetime import date

from amplitude_pipeline.amplitude.client import ExportWindow
from amplitude_pipeline_tests.amplitude.support import (
    CONFIG,
    DAY,
    EMPTY_DAY,
    day_content,
    decompressed,
    make_client,
    windows,
)
from amplitude_simulator import SimulatorServer
from amplitude_simulator.data import day_layout


def test_the_config_has_multi_part_hours_with_parts_past_9() -> None:
    # Precondition of the ordering tests below: without it they could not catch a name sort.
    parts = [layout.part for layout in day_layout(CONFIG, DAY)]
    assert max(parts) >= 10


def test_day_output_is_the_days_lines_in_hour_then_part_order(
    server: SimulatorServer, sleeps: list[float]
) -> None:
    out = io.BytesIO()

    make_client(server, sleeps).export_day(DAY, out)

    assert decompressed(out) == day_content(CONFIG, DAY)


def test_day_export_reports_events_files_and_one_request(
    server: SimulatorServer, sleeps: list[float]
) -> None:
    result = make_client(server, sleeps).export_day(DAY, io.BytesIO())

    assert result.events == len(day_content(CONFIG, DAY).splitlines())
    assert result.files == len(day_layout(CONFIG, DAY))
    assert result.requests == 1
    assert result.windows == [str(ExportWindow.for_day(DAY))]
    assert not result.empty


def test_day_is_requested_as_one_whole_utc_day(server: SimulatorServer, sleeps: list[float]) -> None:
    make_client(server, sleeps).export_day(date(2024, 1, 12), io.BytesIO())

    assert windows(server) == [("20240112T00", "20240112T23", 200)]


def test_a_404_day_is_empty_and_writes_nothing(server: SimulatorServer, sleeps: list[float]) -> None:
    out = io.BytesIO()

    result = make_client(server, sleeps).export_day(EMPTY_DAY, out)

    assert result.empty
    assert (result.events, result.files, result.requests) == (0, 0, 1)
    assert out.getvalue() == b""
    assert windows(server) == [("20240110T00", "20240110T23", 404)]
    assert sleeps == []


def test_days_append_to_the_same_output(server: SimulatorServer, sleeps: list[float]) -> None:
    client = make_client(server, sleeps)
    out = io.BytesIO()

    client.export_day(date(2024, 1, 8), out)
    client.export_day(date(2024, 1, 9), out)

    assert decompressed(out) == day_content(CONFIG, date(2024, 1, 8)) + day_content(CONFIG, date(2024, 1, 9))
