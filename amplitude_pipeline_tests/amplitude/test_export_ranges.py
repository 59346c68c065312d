"""Ranges of days for ``export_amplitude_range`` (CONTRACT §3): week pieces, validation, keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from amplitude_pipeline.amplitude.export import (
    DayRange,
    ExportRange,
    ExportRangeError,
    last_finished_week,
    latest_exportable_day,
    object_key,
    parse_export_range,
    week_pieces,
)

D = date.fromisoformat
# A Thursday afternoon: the latest complete day is Wednesday 2024-03-13.
NOW = datetime(2024, 3, 14, 15, 30, tzinfo=UTC)


def pieces(first: str, last: str) -> list[tuple[str, str]]:
    return [(str(p.first_day), str(p.last_day)) for p in week_pieces(D(first), D(last))]


def test_a_monday_to_sunday_range_is_exactly_its_weeks():
    assert pieces("2024-01-08", "2024-01-21") == [
        ("2024-01-08", "2024-01-14"),
        ("2024-01-15", "2024-01-21"),
    ]


def test_partial_first_and_last_weeks_are_clipped_to_the_range():
    # Wednesday to the Tuesday two weeks later: a partial week, a whole one, a partial one.
    assert pieces("2024-01-10", "2024-01-23") == [
        ("2024-01-10", "2024-01-14"),
        ("2024-01-15", "2024-01-21"),
        ("2024-01-22", "2024-01-23"),
    ]
    assert pieces("2024-01-10", "2024-01-16") == [("2024-01-10", "2024-01-14"), ("2024-01-15", "2024-01-16")]


def test_a_single_day_is_one_piece_whatever_its_weekday():
    for offset in range(7):
        day = str(D("2024-01-08") + timedelta(days=offset))
        assert pieces(day, day) == [(day, day)]


def test_sunday_and_the_next_monday_are_two_pieces():
    assert pieces("2024-01-14", "2024-01-15") == [("2024-01-14", "2024-01-14"), ("2024-01-15", "2024-01-15")]


def test_a_range_across_the_year_end_keeps_the_monday_weeks():
    # 2024-12-30 is a Monday; the week runs into 2025. 2025-12-29 is a Monday too.
    assert pieces("2024-12-28", "2025-01-06") == [
        ("2024-12-28", "2024-12-29"),
        ("2024-12-30", "2025-01-05"),
        ("2025-01-06", "2025-01-06"),
    ]
    assert pieces("2025-12-31", "2026-01-02") == [("2025-12-31", "2026-01-02")]


def test_every_day_of_a_long_range_is_in_exactly_one_piece_in_order():
    first, last = D("2023-11-29"), D("2024-03-02")  # across a year end and a leap February
    found = [day for piece in week_pieces(first, last) for day in piece.days()]
    assert found == [first + timedelta(days=n) for n in range((last - first).days + 1)]
    assert all(piece.first_day.weekday() == 0 for piece in week_pieces(first, last)[1:])
    assert all(piece.last_day.weekday() == 6 for piece in week_pieces(first, last)[:-1])


def test_a_reversed_range_is_refused():
    with pytest.raises(ValueError, match=r"cannot end \(2024-01-08\) before it starts \(2024-01-09\)"):
        week_pieces(D("2024-01-09"), D("2024-01-08"))


def test_object_keys_are_the_directory_and_the_first_day():
    assert object_key("amplitude/events", D("2024-01-08")) == "amplitude/events/2024-01-08.jsonl.gz"
    assert object_key("/amplitude/events/", D("2024-01-10")) == "amplitude/events/2024-01-10.jsonl.gz"
    request = ExportRange(D("2024-01-10"), D("2024-01-16"), "exports/q1")
    assert [request.key(piece) for piece in request.pieces()] == [
        "exports/q1/2024-01-10.jsonl.gz",
        "exports/q1/2024-01-15.jsonl.gz",
    ]


@pytest.mark.parametrize(
    ("now", "latest"),
    [
        (datetime(2024, 3, 14, 2, 59, 59, tzinfo=UTC), "2024-03-12"),  # the 13th's last hours not yet
        (datetime(2024, 3, 14, 3, 0, tzinfo=UTC), "2024-03-13"),
        (datetime(2024, 3, 14, 23, 59, tzinfo=UTC), "2024-03-13"),
        # 01:00 at UTC+02:00 is 23:00 UTC the day before
        (datetime(2024, 3, 15, 1, 0, tzinfo=timezone(timedelta(hours=2))), "2024-03-13"),
    ],
)
def test_a_day_is_exportable_from_three_o_clock_utc_the_next_day(now, latest):
    assert latest_exportable_day(now) == D(latest)


def test_the_last_finished_week_ends_on_the_latest_complete_sunday():
    assert last_finished_week(NOW) == DayRange(D("2024-03-04"), D("2024-03-10"))
    # Monday 02:00: Sunday is not complete yet, so the week before.
    assert last_finished_week(datetime(2024, 3, 11, 2, tzinfo=UTC)) == DayRange(
        D("2024-02-26"), D("2024-03-03")
    )
    assert last_finished_week(datetime(2024, 3, 11, 3, tzinfo=UTC)) == DayRange(
        D("2024-03-04"), D("2024-03-10")
    )


def test_a_valid_request_is_parsed_and_its_directory_trimmed():
    request = parse_export_range(" 2024-01-10", "2024-03-13 ", "  /exports/q1//  ", NOW)
    assert request == ExportRange(D("2024-01-10"), D("2024-03-13"), "exports/q1")


def refused(start: str, end: str, directory: str = "exports", now: datetime = NOW) -> str:
    with pytest.raises(ExportRangeError) as caught:
        parse_export_range(start, end, directory, now)
    message = str(caught.value)
    assert message.startswith("export_amplitude_range: ")
    return message


def test_a_reversed_request_says_to_swap_the_days():
    assert refused("2024-01-21", "2024-01-08") == (
        "export_amplitude_range: start_date 2024-01-21 is after end_date 2024-01-08: both days are "
        "included, so start_date must be on or before end_date (swapped?)"
    )


def test_an_end_date_today_or_later_is_refused_with_the_latest_day_allowed():
    for end in ("2024-03-14", "2024-03-15", "2030-01-01"):
        assert refused("2024-03-01", end) == (
            f"export_amplitude_range: end_date {end} cannot be exported yet: Amplitude makes an hour "
            "exportable about 2 hours after it ends, so a UTC day is complete from 03:00 UTC the next "
            "day; at 2024-03-14 15:30 UTC the latest complete day is 2024-03-13: set end_date on or "
            "before it"
        )
    early = datetime(2024, 3, 14, 1, 0, tzinfo=UTC)
    assert "the latest complete day is 2024-03-12" in refused("2024-03-01", "2024-03-13", now=early)


@pytest.mark.parametrize(
    "value",
    ["2024-1-8", "20240108", "2024-W02-1", "08.01.2024", "", "   ", "2024-01-08T00:00", "２０２４-01-08"],
)
def test_a_malformed_date_is_named_with_the_expected_form(value):
    assert refused(value, "2024-01-14") == (
        f"export_amplitude_range: start_date {value!r} is not a date in YYYY-MM-DD form (e.g. 2024-01-08)"
    )


def test_an_impossible_calendar_date_is_named():
    assert refused("2024-01-08", "2023-02-29") == (
        "export_amplitude_range: end_date 2023-02-29 is not a calendar date (day is out of range for month)"
    )


@pytest.mark.parametrize("value", ["", "   ", "/", "//", " / ", "\t/\n"])
def test_an_empty_directory_is_refused(value):
    assert refused("2024-01-08", "2024-01-14", value) == (
        f"export_amplitude_range: directory {value!r} is empty once spaces and '/' are removed: "
        "give a key prefix inside S3_BUCKET, e.g. amplitude/ranges"
    )


def test_a_directory_with_an_empty_segment_or_a_url_is_refused():
    assert "directory 'a//b' has an empty path segment" in refused("2024-01-08", "2024-01-14", "a//b")
    message = refused("2024-01-08", "2024-01-14", "s3://amplitude-raw/exports")
    assert "directory 's3://amplitude-raw/exports' is a URL: give a key prefix inside S3_BUCKET" in message


def test_every_problem_is_reported_at_once():
    message = refused("2024-13-01", "tomorrow", "/")
    assert message.count(";") == 2
    assert "start_date 2024-13-01 is not a calendar date" in message
    assert "end_date 'tomorrow' is not a date in YYYY-MM-DD form" in message
    assert "directory '/' is empty" in message
    both = refused("2024-03-20", "2024-03-15")
    assert "start_date 2024-03-20 is after end_date 2024-03-15" in both
    assert "end_date 2024-03-15 cannot be exported yet" in both
