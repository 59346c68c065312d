"""A week of the Export API merged into one gzip JSON-lines file."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import BinaryIO

from amplitude_pipeline.amplitude.client import AmplitudeExportClient, DayExport

DAYS_PER_WEEK = 7


@dataclass
class WeekExport:
    week_start: date
    days: list[DayExport] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(day.events for day in self.days)

    @property
    def requests(self) -> int:
        return sum(day.requests for day in self.days)

    @property
    def empty_days(self) -> list[str]:
        return [day.day.isoformat() for day in self.days if day.empty]


def week_days(week_start: date) -> list[date]:
    return [week_start + timedelta(days=offset) for offset in range(DAYS_PER_WEEK)]


def export_week(client: AmplitudeExportClient, week_start: date, out: BinaryIO) -> WeekExport:
    """Write the week's events to ``out``: days in order, one Export API day at a time."""
    result = WeekExport(week_start)
    for day in week_days(week_start):
        result.days.append(client.export_day(day, out))
    return result
