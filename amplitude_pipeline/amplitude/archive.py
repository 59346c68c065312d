"""Reading the zip archives the Export API returns.

An archive holds one gzipped JSON-lines file per hour and part, named
``{project}/{project}_{YYYY-MM-DD}_{H}#{n}.json.gz``; the hour is not zero-padded and the
members come in no guaranteed order, so they are sorted by (day, hour, part) here.
"""

from __future__ import annotations

import gzip
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from amplitude_pipeline.inflate import GzipMemberInflater

_MEMBER_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json(\.gz)?$")
_COPY_BUFFER = 1 << 20
# Appended after a member whose last line lacks its newline, so that concatenating members
# never glues two events onto one line. A gzip member of its own: readers see one stream.
_NEWLINE_MEMBER = gzip.compress(b"\n", mtime=0)


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


class ArchiveError(Exception):
    """The archive is not a readable Export API zip (truncated, not a zip, corrupt member)."""


@dataclass(frozen=True, order=True)
class HourFile:
    day: str
    hour: int
    part: int
    name: str
    compressed: bool


@dataclass(frozen=True)
class ArchiveStats:
    events: int  # lines: the Export API writes one event per line
    files: int


def list_hour_files(archive: zipfile.ZipFile) -> list[HourFile]:
    """The archive's event files in (day, hour, part) order; other members are ignored."""
    files = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        match = _MEMBER_NAME.search(info.filename)
        if match is None:
            continue
        day, hour, part, gz = match.groups()
        files.append(HourFile(day, int(hour), int(part), info.filename, gz is not None))
    return sorted(files)


def append_archive_events(archive_path: Path, out: BinaryIO) -> ArchiveStats:
    """Append every event of the archive to ``out`` as gzip members, in hour then part order.

    The members' compressed bytes are copied as they are (the events stay byte for byte as
    the API returned them, and nothing is recompressed); each member is also decompressed
    once, to verify it and count its events. Memory use is one copy buffer. On any error
    ``out`` is truncated back to where it was, so a retried archive is never appended twice.
    """
    start_offset = out.tell()
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ArchiveError(f"response is not a readable zip archive: {error}") from error
    events = 0
    with archive:
        hour_files = list_hour_files(archive)
        for hour_file in hour_files:
            try:
                events += _append_member(archive, hour_file, out)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
                out.seek(start_offset)
                out.truncate()
                raise ArchiveError(f"archive member {hour_file.name} is corrupt: {error}") from error
    return ArchiveStats(events=events, files=len(hour_files))


def _append_member(archive: zipfile.ZipFile, hour_file: HourFile, out: BinaryIO) -> int:
    if not hour_file.compressed:
        with archive.open(hour_file.name) as raw, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            return _copy_counting_lines(raw, gz)
    with archive.open(hour_file.name) as raw:
        lines, ends_with_newline = _copy_verifying_gzip(raw, out)
    if not ends_with_newline:
        out.write(_NEWLINE_MEMBER)
    return lines


def _copy_verifying_gzip(raw: _Readable, out: _Writable) -> tuple[int, bool]:
    """Copy a gzip file's bytes as they are, inflating them on the way to verify them and count
    their lines (a last line without its newline counts); also whether the text ends with one.

    One pass over the member. Several concatenated gzip members are one text, as every gzip
    reader sees them; a member cut short raises ``EOFError``.
    """
    inflater = GzipMemberInflater()
    newlines = 0
    last_byte = b"\n"
    in_member = False
    while chunk := raw.read(_COPY_BUFFER):
        out.write(chunk)
        while chunk:
            in_member = True
            text = inflater.decompress(chunk)
            if text:
                newlines += text.count(b"\n")
                last_byte = text[-1:]
            if not inflater.eof:
                break
            chunk = inflater.unused_data
            inflater = GzipMemberInflater()
            in_member = False
    if in_member:
        raise EOFError("the gzip member ends before its end marker (truncated)")
    ends_with_newline = last_byte == b"\n"
    return newlines + (0 if ends_with_newline else 1), ends_with_newline


def _copy_counting_lines(raw: _Readable, out: _Writable) -> int:
    newlines = 0
    last_byte = b"\n"
    while chunk := raw.read(_COPY_BUFFER):
        out.write(chunk)
        newlines += chunk.count(b"\n")
        last_byte = chunk[-1:]
    if last_byte != b"\n":
        out.write(b"\n")
        newlines += 1
    return newlines
