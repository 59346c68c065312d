"""export_days: any run of days, the code a week and an export_amplitude_range piece share."""

from __future__ import annotations

import gzip
import io
from datetime import date, timedelta

import pytest

from amplitude_pipeline.amplitude.export import export_days, week_range
from amplitude_pipeline_tests.amplitude.support import CONFIG, EMPTY_DAY, WEEK_START, make_client, windows
from amplitude_simulator import SimulatorServer, expected_lines

SATURDAY = date(2024, 1, 13)
TUESDAY = date(2024, 1, 16)


def test_a_run_across_a_week_boundary_holds_its_days_in_order(server: SimulatorServer, sleeps):
    out = io.BytesIO()

    result = export_days(make_client(server, sleeps), SATURDAY, TUESDAY, out)

    days = [SATURDAY + timedelta(days=n) for n in range(4)]
    expected = [line for day in days for line in expected_lines(CONFIG, day)]
    assert gzip.decompress(out.getvalue()) == b"".join(line + b"\n" for line in expected)
    assert [day.day for day in result.days] == days
    assert (result.first_day, result.last_day, result.events, result.requests) == (
        SATURDAY,
        TUESDAY,
        len(expected),
        4,
    )
    assert windows(server) == [(f"{day:%Y%m%d}T00", f"{day:%Y%m%d}T23", 200) for day in days]


def test_one_day_is_one_request_and_an_empty_day_is_listed(server: SimulatorServer, sleeps):
    out = io.BytesIO()

    result = export_days(make_client(server, sleeps), EMPTY_DAY, EMPTY_DAY, out)

    assert out.getvalue() == b""
    assert (result.events, result.empty_days) == (0, [EMPTY_DAY.isoformat()])
    assert windows(server) == [("20240110T00", "20240110T23", 404)]


def test_a_week_is_its_seven_days_monday_to_sunday():
    week = week_range(WEEK_START)

    assert (week.first_day, week.last_day) == (WEEK_START, WEEK_START + timedelta(days=6))
    assert list(week.days()) == [WEEK_START + timedelta(days=n) for n in range(7)]


def test_a_reversed_run_makes_no_request(server: SimulatorServer, sleeps):
    with pytest.raises(ValueError, match="before it starts"):
        export_days(make_client(server, sleeps), TUESDAY, SATURDAY, io.BytesIO())
    assert windows(server) == []
