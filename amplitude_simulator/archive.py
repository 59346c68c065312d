"""The Export API's response body: a zip of gzipped JSON-lines files, one per hour part.

Member names follow Amplitude: ``{project_id}/{project_id}_{YYYY-MM-DD}_{H}#{n}.json.gz`` with
the hour ``H`` not zero-padded and ``n`` the part number. Member order in a real archive is not
guaranteed, so the simulator shuffles it (deterministically per request window, and never
leaving it sorted) to make clients sort by (day, hour, part) themselves.
"""

from __future__ import annotations

import gzip
import random
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, TypeVar

from amplitude_simulator.data import SimulatorConfig, day_layout, hour_files, member_name, scoped_random

__all__ = [
    "ArchiveHour",
    "archive_plan",
    "gzip_member",
    "member_name",
    "parse_export_time",
    "parse_member_name",
    "window_hours",
    "write_archive",
]

_EXPORT_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})")
_MEMBER_NAME = re.compile(r"(?P<project>\d+)/(?P=project)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz")

T = TypeVar("T")


def parse_export_time(value: str) -> datetime:
    """Parse the API's ``YYYYMMDDTHH`` parameter into a naive UTC datetime (ValueError if bad)."""
    match = _EXPORT_TIME.fullmatch(value)
    if match is None:
        raise ValueError("expected YYYYMMDDTHH, e.g. 20240108T05")
    year, month, day, hour = (int(group) for group in match.groups())
    if hour > 23:
        raise ValueError("the hour must be within 00..23")
    try:
        return datetime(year, month, day, hour)
    except ValueError as error:
        raise ValueError(f"not a calendar date: {error}") from None


def window_hours(start: datetime, end: datetime) -> int:
    """Number of hours in the inclusive window ``[start, end]``."""
    return int((end - start) / timedelta(hours=1)) + 1


def parse_member_name(name: str) -> tuple[date, int, int]:
    """``(day, hour, part)`` of a member name (ValueError if it is not one)."""
    match = _MEMBER_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"not an Amplitude export member name: {name!r}")
    return date.fromisoformat(match.group(2)), int(match.group(3)), int(match.group(4))


def gzip_member(lines: list[bytes]) -> bytes:
    """A member's content: the lines joined by newlines, newline-terminated, gzipped.

    ``mtime=0`` keeps the bytes identical from run to run.
    """
    payload = b"\n".join(lines) + b"\n" if lines else b""
    return gzip.compress(payload, compresslevel=6, mtime=0)


@dataclass(frozen=True, slots=True)
class ArchiveHour:
    """One hour of the archive and the order its parts are written in."""

    day: date
    hour: int
    parts: tuple[int, ...]


def _shuffled_unsorted(items: list[T], rng: random.Random) -> list[T]:
    """A shuffled copy that is never in the original order (when there are two or more items)."""
    shuffled = list(items)
    rng.shuffle(shuffled)
    if len(shuffled) > 1 and shuffled == items:
        shuffled = shuffled[1:] + shuffled[:1]
    return shuffled


def archive_plan(config: SimulatorConfig, start: datetime, end: datetime) -> list[ArchiveHour]:
    """The non-empty hours of ``[start, end]`` in archive order (empty list: nothing to export).

    Hours are shuffled, and so are the parts within an hour; one hour's parts stay adjacent so
    the server only ever holds one generated hour in memory.
    """
    hours: list[ArchiveHour] = []
    day = start.date()
    while day <= end.date():
        parts_by_hour: dict[int, list[int]] = {}
        for layout in day_layout(config, day):
            moment = datetime(day.year, day.month, day.day, layout.hour)
            if start <= moment <= end:
                parts_by_hour.setdefault(layout.hour, []).append(layout.part)
        hours.extend(ArchiveHour(day, hour, tuple(parts)) for hour, parts in parts_by_hour.items())
        day += timedelta(days=1)
    rng = scoped_random(config.seed, "archive-order", start.isoformat(), end.isoformat())
    return [
        ArchiveHour(item.day, item.hour, tuple(_shuffled_unsorted(list(item.parts), rng)))
        for item in _shuffled_unsorted(hours, rng)
    ]


def write_archive(config: SimulatorConfig, plan: list[ArchiveHour], output: IO[bytes]) -> int:
    """Write the zip for ``plan`` to ``output``; returns the number of members written.

    Members are stored (not deflated again: they are gzip already), with the hour as their
    timestamp, so equal requests produce byte-identical archives.
    """
    count = 0
    with zipfile.ZipFile(output, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for item in plan:
            files = {hour_file.part: hour_file for hour_file in hour_files(config, item.day, item.hour)}
            for part in item.parts:
                info = zipfile.ZipInfo(
                    member_name(config.project_id, item.day, item.hour, part),
                    date_time=(item.day.year, item.day.month, item.day.day, item.hour, 0, 0),
                )
                info.external_attr = 0o644 << 16
                archive.writestr(info, gzip_member(files[part].lines))
                count += 1
    return count
