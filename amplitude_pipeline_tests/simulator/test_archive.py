"""The archive body on its own: plan order, member content, parameter parsing."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import date, datetime

import pytest

from amplitude_simulator.archive import (
    ArchiveMember,
    archive_plan,
    parse_export_time,
    parse_member_name,
    window_hours,
    write_archive,
)
from amplitude_simulator.data import SimulatorConfig, day_layout, iter_part_lines

CONFIG = SimulatorConfig(users=30, events_per_day=300, multi_part_hour_fraction=0.5)
DAY = date(2024, 1, 8)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2024, 1, 8, 0), datetime(2024, 1, 8, 23)),
        (datetime(2024, 1, 8, 9), datetime(2024, 1, 8, 17)),
        (datetime(2024, 1, 6, 0), datetime(2024, 1, 12, 23)),
    ],
)
def test_plans_cover_the_window_and_are_never_in_canonical_order(start: datetime, end: datetime) -> None:
    plan = archive_plan(CONFIG, start, end)
    canonical = sorted(plan, key=lambda m: (m.day, m.hour, m.part))
    assert plan != canonical
    assert set(plan) == set(canonical) and len(plan) == len(set(plan))
    assert all(start <= datetime(m.day.year, m.day.month, m.day.day, m.hour) <= end for m in plan)
    multi_part_hours = {(m.day, m.hour) for m in plan if m.part > 0}
    assert multi_part_hours
    for key in multi_part_hours:
        parts = [m.part for m in plan if (m.day, m.hour) == key]
        assert parts != sorted(parts), key


def test_each_member_is_its_gzipped_newline_terminated_lines() -> None:
    layout = next(part for part in day_layout(CONFIG, DAY) if part.part == 1)
    member = ArchiveMember(DAY, layout.hour, layout.part)
    output = io.BytesIO()
    assert write_archive(CONFIG, [member], output) == 1
    with zipfile.ZipFile(output) as archive:
        (info,) = archive.infolist()
        assert info.filename == f"187520/187520_2024-01-08_{layout.hour}#1.json.gz"
        assert info.compress_type == zipfile.ZIP_STORED
        content = gzip.decompress(archive.read(info))
    lines = list(iter_part_lines(CONFIG, DAY, layout.hour, layout.part))
    assert len(lines) == layout.events
    assert content == b"\n".join(lines) + b"\n"


def test_equal_plans_give_byte_identical_archives() -> None:
    plan = archive_plan(CONFIG, datetime(2024, 1, 8, 0), datetime(2024, 1, 8, 5))
    first, second = io.BytesIO(), io.BytesIO()
    write_archive(CONFIG, plan, first)
    write_archive(CONFIG, plan, second)
    assert first.getvalue() == second.getvalue()


def test_member_names_round_trip() -> None:
    assert parse_member_name("187520/187520_2024-01-08_5#0.json.gz") == (DAY, 5, 0)
    assert parse_member_name("187520/187520_2024-01-08_23#2.json.gz") == (DAY, 23, 2)
    with pytest.raises(ValueError):
        parse_member_name("187520/187520_2024-01-08_05.json.gz")


def test_export_times_parse_and_windows_count_inclusive_hours() -> None:
    assert parse_export_time("20240108T05") == datetime(2024, 1, 8, 5)
    assert window_hours(datetime(2024, 1, 8, 0), datetime(2024, 1, 8, 23)) == 24
    assert window_hours(datetime(2024, 1, 8, 5), datetime(2024, 1, 8, 5)) == 1
    for bad in ("2024010805", "20240108T5", "20240108T24", "20240132T00", " 20240108T00"):
        with pytest.raises(ValueError):
            parse_export_time(bad)
