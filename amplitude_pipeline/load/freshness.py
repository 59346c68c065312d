"""When a week's export, or a week's tables, are late (CONTRACT §3, "Freshness").

- ``amplitude_events`` is late when the last finished week is not exported by Monday 06:00 UTC:
  week W (Monday W to Sunday) is due at W + 7 days + 6 hours. The weekly schedule exports it at
  03:00; the three hours after it are for retries.
- A week's tables are late when its export is newer than them for over 2 hours.

Each week is judged on its own, so a late week stays late (and shows as such) whatever happens to
the weeks after it, until its export, or its tables, arrive. Pure functions of the facts and the
time; the Dagster layer reads the facts and reports the verdicts as asset checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

EXPORT_DUE_AFTER_WEEK_END = timedelta(hours=6)
TABLES_MAX_LAG = timedelta(hours=2)
WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Freshness:
    fresh: bool
    description: str
    overdue_since: datetime | None = None
    """When it became late; None while it is not."""


def export_due(week: date) -> datetime:
    """The moment week ``week``'s export is due: the Monday after it, 06:00 UTC."""
    return datetime.combine(week, time(), tzinfo=UTC) + WEEK + EXPORT_DUE_AFTER_WEEK_END


def latest_due_week(now: datetime, first_week: date) -> date | None:
    """The latest week whose export is due by ``now``; None before the first week is due."""
    monday_this_week = (now.astimezone(UTC) - timedelta(days=now.astimezone(UTC).weekday())).date()
    candidate = monday_this_week - WEEK
    if now < export_due(candidate):
        candidate -= WEEK
    return candidate if candidate >= first_week else None


def export_freshness(week: date, exported_at: datetime | None, now: datetime) -> Freshness:
    """Whether week ``week``'s ``amplitude_events`` is where it should be by ``now``."""
    due = export_due(week)
    if exported_at is not None:
        return Freshness(True, f"week {week} is exported ({exported_at:%Y-%m-%d %H:%M} UTC)")
    if now < due:
        return Freshness(True, f"week {week} is not due yet (due {due:%Y-%m-%d %H:%M} UTC)")
    return Freshness(
        False,
        f"week {week} is not exported; it was due {due:%Y-%m-%d %H:%M} UTC "
        f"({_hours(now - due)} ago): check the weekly_amplitude_export schedule and the export's runs",
        overdue_since=due,
    )


def tables_freshness(
    week: date, exported_at: datetime | None, tables_newer_than_export: bool, now: datetime
) -> Freshness:
    """Whether week ``week``'s tables follow its latest export (exported at ``exported_at``)."""
    if exported_at is None:
        return Freshness(True, f"week {week} has no export to follow")
    if tables_newer_than_export:
        return Freshness(True, f"week {week}'s tables are newer than its export")
    late_from = exported_at + TABLES_MAX_LAG
    if now < late_from:
        return Freshness(
            True, f"week {week}'s tables have until {late_from:%Y-%m-%d %H:%M} UTC to follow its export"
        )
    return Freshness(
        False,
        f"week {week} was exported {exported_at:%Y-%m-%d %H:%M} UTC and its tables have not followed for "
        f"{_hours(now - exported_at)} (allowed: {_hours(TABLES_MAX_LAG)}): see tables_after_export_sensor's "
        "skip reason, the week's key check and its table runs",
        overdue_since=late_from,
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h"
