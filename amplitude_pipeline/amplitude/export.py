"""Runs of UTC days from the Export API, each merged into one gzip JSON-lines object (CONTRACT §3, §4).

A weekly ``amplitude_events`` partition and a piece of an ``export_amplitude_range`` run are
the same thing: consecutive days, one Export API request per day, days in order, assembled in
a local file and uploaded as one object. Both go through ``export_to_object``.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from amplitude_pipeline.amplitude.client import AmplitudeExportClient, AmplitudeExportError, DayExport
from amplitude_pipeline.log import Log
from amplitude_pipeline.text import short_repr

DAYS_PER_WEEK = 7
OBJECT_SUFFIX = ".jsonl.gz"
# Amplitude makes an hour exportable about two hours after it closes; one hour of margin on
# top, as the weekly schedule (Monday 03:00 UTC) has: a day is complete from 03:00 UTC the next day.
EXPORT_DELAY = timedelta(hours=3)
DAY_COMPLETE_AT_UTC = f"{datetime.min + EXPORT_DELAY:%H:%M}"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class DayRange:
    """UTC days ``first_day`` to ``last_day``, both inclusive."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.first_day > self.last_day:
            raise ValueError(f"a day range cannot end ({self.last_day}) before it starts ({self.first_day})")

    def days(self) -> Iterator[date]:
        day = self.first_day
        while day <= self.last_day:
            yield day
            day += timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.first_day}..{self.last_day}"


def week_range(monday: date) -> DayRange:
    return DayRange(monday, monday + timedelta(days=DAYS_PER_WEEK - 1))


def week_pieces(first_day: date, last_day: date) -> list[DayRange]:
    """The Monday-start weeks that meet ``first_day``..``last_day``, each clipped to that range,
    in order. A range from a Monday to a Sunday gives exactly its weeks."""
    DayRange(first_day, last_day)  # a reversed range raises here
    pieces = []
    start = first_day
    while start <= last_day:
        next_monday = start + timedelta(days=DAYS_PER_WEEK - start.weekday())
        pieces.append(DayRange(start, min(next_monday - timedelta(days=1), last_day)))
        start = next_monday
    return pieces


@dataclass
class DaysExport:
    first_day: date
    last_day: date
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


def export_days(client: AmplitudeExportClient, first_day: date, last_day: date, out: BinaryIO) -> DaysExport:
    """Write the events of ``first_day``..``last_day`` to ``out``: days in order, one Export API
    day at a time."""
    result = DaysExport(first_day, last_day)
    for day in DayRange(first_day, last_day).days():
        result.days.append(client.export_day(day, out))
    return result


class Uploaded(Protocol):
    @property
    def etag(self) -> str: ...

    @property
    def size(self) -> int: ...


class ObjectStore(Protocol):
    """Where exports are uploaded (``amplitude_pipeline.storage.s3.RawEventStore``)."""

    def upload(self, path: Path, key: str) -> Uploaded: ...

    def uri(self, key: str) -> str: ...


@dataclass(frozen=True)
class ExportedObject:
    export: DaysExport
    stored: Uploaded
    duration_seconds: float


def export_to_object(
    client: AmplitudeExportClient, store: ObjectStore, days: DayRange, key: str
) -> ExportedObject:
    """Export ``days`` into the object ``key``.

    The file is assembled on local disk (``TMPDIR``) and uploaded in one multipart upload:
    the object appears whole or not at all. A failure leaves whatever was under ``key``
    untouched; a success replaces it whole.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"amplitude-export-{days.first_day}-") as tmp:
        path = Path(tmp) / f"{days.first_day}{OBJECT_SUFFIX}"
        with path.open("wb") as out:
            export = export_days(client, days.first_day, days.last_day, out)
        stored = store.upload(path, key)
    return ExportedObject(export, stored, round(time.monotonic() - started, 3))


def object_key(directory: str, first_day: date) -> str:
    """``{directory}/{first day}.jsonl.gz``: with ``directory`` = S3_PREFIX and a Monday, the
    weekly partition's key."""
    return f"{directory.strip('/')}/{first_day.isoformat()}{OBJECT_SUFFIX}"


def latest_exportable_day(now: datetime) -> date:
    """The last UTC day whose every hour Amplitude has made exportable by ``now``."""
    return (now.astimezone(UTC) - EXPORT_DELAY).date() - timedelta(days=1)


def last_finished_week(now: datetime) -> DayRange:
    """The latest Monday-to-Sunday week that is wholly exportable at ``now``."""
    latest = latest_exportable_day(now)
    sunday = latest - timedelta(days=(latest.weekday() + 1) % DAYS_PER_WEEK)
    return DayRange(sunday - timedelta(days=DAYS_PER_WEEK - 1), sunday)


class ExportRangeError(ValueError):
    """The requested range cannot be exported; the message lists every problem and what to do."""


@dataclass(frozen=True)
class ExportRange:
    first_day: date
    last_day: date
    directory: str

    def pieces(self) -> list[DayRange]:
        return week_pieces(self.first_day, self.last_day)

    def key(self, piece: DayRange) -> str:
        return object_key(self.directory, piece.first_day)


@dataclass(frozen=True)
class ExportedPiece:
    """One week (clipped to the range) of an ``export_amplitude_range`` run, written whole."""

    piece: DayRange
    key: str
    exported: ExportedObject


class RangeExportError(Exception):
    """A piece of a range failed: nothing was written under its key; the pieces before it are whole."""

    def __init__(self, piece: DayRange, key: str, written: list[ExportedPiece], cause: AmplitudeExportError):
        super().__init__(
            f"{piece} failed and nothing was written to {key}; the {len(written)} earlier object(s) are "
            f"complete. Rerun the job (every piece is exported again) or a range starting {piece.first_day}. "
            f"{cause}"
        )
        self.piece = piece
        self.key = key
        self.written = written


def export_range(
    client: AmplitudeExportClient, store: ObjectStore, request: ExportRange, log: Log
) -> list[ExportedPiece]:
    """Export each piece of ``request`` (a Monday-start week clipped to it) into its object, in
    order, with the same code as a weekly partition; raises :class:`RangeExportError` at the first
    piece that fails."""
    pieces = request.pieces()
    written: list[ExportedPiece] = []
    for number, piece in enumerate(pieces, start=1):
        key = request.key(piece)
        try:
            exported = export_to_object(client, store, piece, key)
        except AmplitudeExportError as error:
            raise RangeExportError(piece, key, written, error) from error
        written.append(ExportedPiece(piece, key, exported))
        export = exported.export
        log.info(
            f"{number}/{len(pieces)} {piece}: {export.events} events, {exported.stored.size} bytes, "
            f"empty days: {', '.join(export.empty_days) or 'none'} -> {store.uri(key)} "
            f"({exported.duration_seconds:.1f} s)"
        )
    return written


def parse_export_range(start_date: str, end_date: str, directory: str, now: datetime) -> ExportRange:
    """Validate an ``export_amplitude_range`` request, before any request is made.

    Dates are ``YYYY-MM-DD`` (UTC days, both inclusive); the end must be a day Amplitude has
    finished making exportable at ``now`` (see ``EXPORT_DELAY``). ``directory`` is a key
    prefix inside the bucket: surrounding whitespace and '/' are dropped, nothing else may be
    empty. Raises ``ExportRangeError`` naming every problem at once.
    """
    problems: list[str] = []
    first = _parse_day("start_date", start_date, problems)
    last = _parse_day("end_date", end_date, problems)
    if first is not None and last is not None and first > last:
        problems.append(
            f"start_date {first} is after end_date {last}: both days are included, so start_date "
            "must be on or before end_date (swapped?)"
        )
    latest = latest_exportable_day(now)
    if last is not None and last > latest:
        problems.append(
            f"end_date {last} cannot be exported yet: Amplitude makes an hour exportable about 2 hours "
            f"after it ends, so a UTC day is complete from {DAY_COMPLETE_AT_UTC} UTC the next day; "
            f"at {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC the latest complete day is {latest}: "
            "set end_date on or before it"
        )
    prefix = _parse_directory(directory, problems)
    if problems:
        raise ExportRangeError("export_amplitude_range: " + "; ".join(problems))
    assert first is not None and last is not None and prefix is not None
    return ExportRange(first, last, prefix)


def _parse_day(name: str, value: str, problems: list[str]) -> date | None:
    text = value.strip()
    if not _ISO_DATE.fullmatch(text):
        problems.append(f"{name} {short_repr(value)} is not a date in YYYY-MM-DD form (e.g. 2024-01-08)")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        problems.append(f"{name} {text} is not a calendar date ({error})")
        return None


def _parse_directory(value: str, problems: list[str]) -> str | None:
    prefix = value.strip().strip("/").strip()
    example = "give a key prefix inside S3_BUCKET, e.g. amplitude/ranges"
    if not prefix:
        problems.append(f"directory {short_repr(value)} is empty once spaces and '/' are removed: {example}")
        return None
    if "://" in prefix:
        problems.append(f"directory {short_repr(value)} is a URL: {example} (the bucket is S3_BUCKET)")
        return None
    if any(not segment.strip() for segment in prefix.split("/")):
        problems.append(f"directory {short_repr(value)} has an empty path segment: {example}")
        return None
    return prefix
