"""The Export API zip: member order, newline handling, corrupt members."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pytest

from amplitude_pipeline.amplitude.archive import ArchiveError, append_archive_events, list_hour_files

PROJECT = "187520"


def member(day: str, hour: int, part: int, suffix: str = ".json.gz") -> str:
    return f"{PROJECT}/{PROJECT}_{day}_{hour}#{part}{suffix}"


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_list_hour_files_sorts_by_day_hour_and_part_numerically(tmp_path: Path) -> None:
    names = [
        member("2024-01-08", 10, 0),
        member("2024-01-08", 9, 10),
        member("2024-01-08", 2, 1),
        member("2024-01-08", 9, 2),
        member("2024-01-07", 23, 0),
        member("2024-01-08", 9, 11),
        member("2024-01-08", 9, 0),
    ]
    path = write_zip(tmp_path / "a.zip", dict.fromkeys(names, b""))

    with zipfile.ZipFile(path) as archive:
        order = [(f.day, f.hour, f.part) for f in list_hour_files(archive)]

    assert order == [
        ("2024-01-07", 23, 0),
        ("2024-01-08", 2, 1),
        ("2024-01-08", 9, 0),
        ("2024-01-08", 9, 2),
        ("2024-01-08", 9, 10),
        ("2024-01-08", 9, 11),
        ("2024-01-08", 10, 0),
    ]


def test_list_hour_files_parses_unpadded_hours_and_compression(tmp_path: Path) -> None:
    names = [member("2024-01-08", 5, 0), member("2024-01-08", 17, 3, suffix=".json")]
    path = write_zip(tmp_path / "a.zip", dict.fromkeys(names, b""))

    with zipfile.ZipFile(path) as archive:
        files = list_hour_files(archive)

    assert [(f.hour, f.part, f.name, f.compressed) for f in files] == [
        (5, 0, names[0], True),
        (17, 3, names[1], False),
    ]


def test_list_hour_files_ignores_directories_and_other_members(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo(f"{PROJECT}/"), b"")
        archive.writestr("README.txt", b"not events")
        archive.writestr(member("2024-01-08", 0, 0), b"")

    with zipfile.ZipFile(path) as archive:
        assert [f.name for f in list_hour_files(archive)] == [member("2024-01-08", 0, 0)]


def test_append_writes_members_in_hour_then_part_order(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "a.zip",
        {
            member("2024-01-08", 10, 0): gzip.compress(b"h10p0\n"),
            member("2024-01-08", 2, 10): gzip.compress(b"h2p10\n"),
            member("2024-01-08", 2, 9): gzip.compress(b"h2p9a\nh2p9b\n"),
        },
    )
    out = io.BytesIO()

    stats = append_archive_events(path, out)

    assert gzip.decompress(out.getvalue()) == b"h2p9a\nh2p9b\nh2p10\nh10p0\n"
    assert (stats.events, stats.files) == (4, 3)


@pytest.mark.parametrize("suffix", [".json.gz", ".json"])
def test_append_adds_the_missing_newline_after_a_members_last_line(tmp_path: Path, suffix: str) -> None:
    def encode(data: bytes) -> bytes:
        return gzip.compress(data) if suffix == ".json.gz" else data

    path = write_zip(
        tmp_path / "a.zip",
        {
            member("2024-01-08", 0, 0, suffix): encode(b'{"a":1}\n{"a":2}'),
            member("2024-01-08", 1, 0, suffix): encode(b'{"a":3}'),
        },
    )
    out = io.BytesIO()

    stats = append_archive_events(path, out)

    assert gzip.decompress(out.getvalue()) == b'{"a":1}\n{"a":2}\n{"a":3}\n'
    assert stats.events == 3


def test_append_copies_events_byte_for_byte(tmp_path: Path) -> None:
    line = '{"event_type":"открыл","user_properties":{"city":"Москва"},"x":1.50}'.encode()
    path = write_zip(tmp_path / "a.zip", {member("2024-01-08", 3, 0): gzip.compress(line + b"\n")})
    out = io.BytesIO()

    append_archive_events(path, out)

    assert gzip.decompress(out.getvalue()) == line + b"\n"


def test_append_keeps_what_out_already_held(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.zip", {member("2024-01-08", 0, 0): gzip.compress(b"new\n")})
    out = io.BytesIO()
    out.write(gzip.compress(b"earlier\n"))

    append_archive_events(path, out)

    assert gzip.decompress(out.getvalue()) == b"earlier\nnew\n"


def test_corrupt_member_raises_and_truncates_out_back(tmp_path: Path) -> None:
    broken = gzip.compress(b"x" * 10_000 + b"\n")[:-12]  # cut inside the stream: EOF before the end
    path = write_zip(
        tmp_path / "a.zip",
        {
            member("2024-01-08", 0, 0): gzip.compress(b"good\n"),  # appended before the broken one
            member("2024-01-08", 1, 0): broken,
        },
    )
    earlier = gzip.compress(b"earlier\n")
    with (tmp_path / "out.gz").open("w+b") as out:
        out.write(earlier)

        with pytest.raises(ArchiveError, match=r"_1#0\.json\.gz"):
            append_archive_events(path, out)

        assert out.tell() == len(earlier)
        out.seek(0)
        assert out.read() == earlier


def test_member_with_bad_crc_raises_archive_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"payload\n"))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = write_zip(tmp_path / "a.zip", {member("2024-01-08", 0, 0): bytes(data)})
    out = io.BytesIO()

    with pytest.raises(ArchiveError):
        append_archive_events(path, out)

    assert out.getvalue() == b""


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Amplitude is temporarily unavailable</body></html>", b""],
    ids=["html", "empty"],
)
def test_a_body_that_is_not_a_zip_raises_archive_error(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "a.zip"
    path.write_bytes(body)

    with pytest.raises(ArchiveError, match="not a readable zip"):
        append_archive_events(path, io.BytesIO())


def test_a_truncated_zip_raises_archive_error(tmp_path: Path) -> None:
    whole = write_zip(tmp_path / "whole.zip", {member("2024-01-08", 0, 0): gzip.compress(b"a\n" * 1000)})
    cut = tmp_path / "cut.zip"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    with pytest.raises(ArchiveError):
        append_archive_events(cut, io.BytesIO())
