"""When a week's export or its tables are late (CONTRACT §3, "Freshness")."""

from datetime import UTC, date, datetime, timedelta

import pytest

from amplitude_pipeline.load.freshness import export_due, export_freshness, latest_due_week, tables_freshness

WEEK = date(2024, 1, 8)  # Monday 8 to Sunday 14 January
DUE = datetime(2024, 1, 15, 6, tzinfo=UTC)


def test_a_week_is_due_the_monday_after_it_at_six_utc():
    assert export_due(WEEK) == DUE


@pytest.mark.parametrize(
    ("now", "week"),
    [
        (DUE - timedelta(seconds=1), date(2024, 1, 1)),  # Monday 05:59:59: the week before is the latest due
        (DUE, WEEK),
        (DUE + timedelta(days=6, hours=23), WEEK),  # Sunday night
        (DUE + timedelta(days=7), date(2024, 1, 15)),
    ],
)
def test_the_latest_due_week_changes_at_the_deadline(now: datetime, week: date):
    assert latest_due_week(now, first_week=date(2024, 1, 1)) == week


def test_no_week_is_due_before_the_first_one():
    assert latest_due_week(DUE - timedelta(seconds=1), first_week=WEEK) is None


def test_an_export_is_late_only_after_its_deadline_and_until_it_arrives():
    assert export_freshness(WEEK, None, DUE - timedelta(minutes=1)).fresh
    late = export_freshness(WEEK, None, DUE + timedelta(hours=3))
    assert not late.fresh
    assert late.overdue_since == DUE
    assert "week 2024-01-08 is not exported; it was due 2024-01-15 06:00 UTC (3.0 h ago)" in late.description
    assert export_freshness(WEEK, DUE + timedelta(hours=5), DUE + timedelta(hours=6)).fresh


def test_tables_are_late_two_hours_after_an_export_they_have_not_followed():
    exported = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert tables_freshness(WEEK, None, False, exported).fresh  # nothing to follow
    assert tables_freshness(WEEK, exported, False, exported + timedelta(hours=2) - timedelta(seconds=1)).fresh
    late = tables_freshness(WEEK, exported, False, exported + timedelta(hours=2))
    assert not late.fresh
    assert late.overdue_since == exported + timedelta(hours=2)
    assert tables_freshness(WEEK, exported, True, exported + timedelta(days=3)).fresh
