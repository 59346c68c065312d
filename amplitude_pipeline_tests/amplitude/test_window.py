"""ExportWindow arithmetic (the retry waits are tested in test_client_faults.py and test_retries.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from amplitude_pipeline.amplitude.client import ExportWindow


def window(day: int, start_hour: int, end_hour: int) -> ExportWindow:
    return ExportWindow(
        datetime(2024, 1, day, start_hour, tzinfo=UTC), datetime(2024, 1, day, end_hour, tzinfo=UTC)
    )


def test_for_day_spans_the_24_utc_hours() -> None:
    day = ExportWindow.for_day(date(2024, 1, 8))

    assert (day.start, day.end, day.hours) == (
        datetime(2024, 1, 8, 0, tzinfo=UTC),
        datetime(2024, 1, 8, 23, tzinfo=UTC),
        24,
    )


def test_params_are_the_apis_start_and_end() -> None:
    assert ExportWindow.for_day(date(2024, 1, 8)).params() == {"start": "20240108T00", "end": "20240108T23"}
    assert window(9, 5, 13).params() == {"start": "20240109T05", "end": "20240109T13"}


def test_halves_of_a_day_are_the_two_12_hour_windows() -> None:
    first, second = ExportWindow.for_day(date(2024, 1, 8)).halves()

    assert first == window(8, 0, 11)
    assert second == window(8, 12, 23)


@pytest.mark.parametrize("hours", [2, 3, 5, 6, 7, 12, 24])
def test_halves_tile_the_window_without_gap_or_overlap(hours: int) -> None:
    whole = window(8, 0, hours - 1)

    first, second = whole.halves()

    assert first.start == whole.start
    assert second.start == first.end + timedelta(hours=1)
    assert second.end == whole.end
    assert (first.hours, second.hours) == (hours // 2, hours - hours // 2)


def test_str_names_the_window_in_utc() -> None:
    assert str(window(8, 13, 13)) == "2024-01-08 13:00 UTC"
    assert str(window(8, 0, 23)) == "2024-01-08 00:00–23:59 UTC"
