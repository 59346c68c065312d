"""A week's export: seven day requests merged into one weekly stream (CONTRACT §4)."""

from __future__ import annotations

import gzip
import io
from datetime import timedelta

import pytest

from amplitude_pipeline.amplitude.export import DaysExport, export_days, week_range
from amplitude_pipeline_tests.amplitude.support import CONFIG, EMPTY_DAY, WEEK_START, make_client, windows
from amplitude_simulator import SimulatorServer, expected_week_lines


@pytest.fixture
def week(server: SimulatorServer, sleeps: list[float]) -> tuple[DaysExport, bytes]:
    out = io.BytesIO()
    week = week_range(WEEK_START)
    result = export_days(make_client(server, sleeps), week.first_day, week.last_day, out)
    return result, out.getvalue()


def test_week_output_is_the_weeks_lines_in_day_order(week: tuple[DaysExport, bytes]) -> None:
    _, content = week

    expected = expected_week_lines(CONFIG, WEEK_START)
    assert gzip.decompress(content) == b"".join(line + b"\n" for line in expected)


def test_week_counts_the_404_day_as_empty(week: tuple[DaysExport, bytes]) -> None:
    result, _ = week

    assert result.empty_days == [EMPTY_DAY.isoformat()]
    assert result.events == len(expected_week_lines(CONFIG, WEEK_START))
    assert [day.day for day in result.days] == [WEEK_START + timedelta(days=n) for n in range(7)]


def test_week_makes_one_whole_day_request_per_day(
    server: SimulatorServer, week: tuple[DaysExport, bytes]
) -> None:
    result, _ = week

    days = [WEEK_START + timedelta(days=n) for n in range(7)]
    assert windows(server) == [
        (f"{day:%Y%m%d}T00", f"{day:%Y%m%d}T23", 404 if day == EMPTY_DAY else 200) for day in days
    ]
    assert result.requests == 7
