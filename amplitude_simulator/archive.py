"""The Export API's response body: a zip of gzipped JSON-lines files, one per hour part.

Member names follow Amplitude: ``{project_id}/{project_id}_{YYYY-MM-DD}_{H}#{n}.json.gz`` with
the hour ``H`` not zero-padded and ``n`` the part number. Member order in a real archive is not
guaranteed, so the simulator shuffles it (deterministically per request window) to make
clients sort by (day, hour, part) themselves.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO

from amplitude_simulator.data import SimulatorConfig, day_layout, iter_part_lines, member_name, scoped_random

__all__ = [
    "ArchiveMember",
    "archive_plan",
    "member_name",
    "parse_export_time",
    "parse_member_name",
    "window_hours",
    "write_archive",
]

_EXPORT_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})")
# zlib level 3: about half the CPU of the default 6 for ~25 % more bytes; the simulator must
# keep up with benchmark volumes (~200k events/day) more than it must save bandwidth.
_GZIP_LEVEL = 3
_MEMBER_NAME = re.compile(r"(?P<project>\d+)/(?P=project)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz")


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


@dataclass(frozen=True, slots=True)
class ArchiveMember:
    """One member of the archive: the file of one part of one hour."""

    day: date
    hour: int
    part: int


def archive_plan(config: SimulatorConfig, start: datetime, end: datetime) -> list[ArchiveMember]:
    """The files of the hours in ``[start, end]``, in archive order (empty: nothing to export).

    The order is a deterministic shuffle (per seed and window) that is never the canonical
    order and never leaves a multi-part hour's parts ascending, so a client that does not sort
    by (day, hour, part) — e.g. sorts by name, or by hour alone — is always caught.
    """
    members: list[ArchiveMember] = []
    day = start.date()
    while day <= end.date():
        members.extend(
            ArchiveMember(day, layout.hour, layout.part)
            for layout in day_layout(config, day)
            if start <= datetime(day.year, day.month, day.day, layout.hour) <= end
        )
        day += timedelta(days=1)
    shuffled = list(members)
    scoped_random(config.seed, "archive-order", start.isoformat(), end.isoformat()).shuffle(shuffled)
    if len(shuffled) > 1 and shuffled == members:
        shuffled = shuffled[1:] + shuffled[:1]
    _unsort_parts(shuffled)
    return shuffled


def _unsort_parts(members: list[ArchiveMember]) -> None:
    """Within each multi-part hour, swap the first and last part if they came out ascending."""
    positions: dict[tuple[date, int], list[int]] = {}
    for position, member in enumerate(members):
        positions.setdefault((member.day, member.hour), []).append(position)
    for slots in positions.values():
        parts = [members[slot].part for slot in slots]
        if len(parts) > 1 and parts == sorted(parts):
            members[slots[0]], members[slots[-1]] = members[slots[-1]], members[slots[0]]


def write_archive(config: SimulatorConfig, plan: list[ArchiveMember], output: IO[bytes]) -> int:
    """Write the zip for ``plan`` to ``output`` (seekable); returns the number of members.

    Each member is the part's lines, newline-terminated, gzipped (``mtime=0``); members are
    stored, not deflated again, and dated with their hour, so equal requests produce
    byte-identical archives. Lines are streamed from the generator into the member, so memory
    stays small whatever the volume.
    """
    with zipfile.ZipFile(output, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for item in plan:
            info = zipfile.ZipInfo(
                member_name(config.project_id, item.day, item.hour, item.part),
                date_time=(item.day.year, item.day.month, item.day.day, item.hour, 0, 0),
            )
            info.external_attr = 0o644 << 16
            with archive.open(info, mode="w") as member:
                _write_gzipped_lines(iter_part_lines(config, item.day, item.hour, item.part), member)
    return len(plan)


def _write_gzipped_lines(lines: Iterable[bytes], output: IO[bytes], batch: int = 512) -> None:
    """Gzip ``lines`` joined by newlines, with a trailing newline, into ``output``."""
    with gzip.GzipFile(fileobj=output, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0) as compressed:
        pending: list[bytes] = []
        for line in lines:
            pending.append(line)
            if len(pending) == batch:
                compressed.write(b"\n".join(pending) + b"\n")
                pending.clear()
        if pending:
            compressed.write(b"\n".join(pending) + b"\n")
