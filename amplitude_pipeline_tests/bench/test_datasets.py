"""The benchmark's generated weeks: the light profile is what it claims and loads under the mapping."""

from collections import Counter
from pathlib import Path

import orjson
import pytest

from amplitude_pipeline.transform.mapping import load_field_mappings
from amplitude_pipeline.transform.records import transform_single_record
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS
from bench import datasets


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(datasets, "CACHE", tmp_path)
    return tmp_path


def test_light_week_gives_every_user_one_to_ten_events_in_time_order_inside_the_week(cache: Path) -> None:
    week = datasets.light_week(1, 300)

    events = [orjson.loads(line) for line in datasets.read_lines(week.file)]
    per_user = Counter(datasets.user_key(event) for event in events)
    assert len(per_user) == week.users == 300
    assert min(per_user.values()) >= 1 and max(per_user.values()) <= 10
    assert len(events) == week.events == sum(per_user.values())
    times = [event["event_time"] for event in events]
    assert times == sorted(times)
    assert times[0] >= "2024-01-08 00:00:00" and times[-1] < "2024-01-15 00:00:00"


def test_light_week_loads_under_the_mapping_with_its_conversions_in_play(cache: Path) -> None:
    mappings = load_field_mappings(DEFAULT_MAPPINGS)
    week = datasets.light_week(1, 300)

    records = [
        transform_single_record(orjson.loads(line), mappings) for line in datasets.read_lines(week.file)
    ]
    raw = [orjson.loads(line)["user_properties"] for line in datasets.read_lines(week.file)]
    assert any(record.ehr_id is None for record in records)  # anonymous users
    assert {properties.get("gender") for properties in raw} >= {"м", "ж"}  # value_map
    assert any(str(properties.get("age", "")).endswith("years") for properties in raw)  # regex
    assert any("." in str(properties.get("birth_date", "")) for properties in raw)  # DD.MM.YYYY


def test_week_generation_is_cached_and_deterministic(cache: Path) -> None:
    first = datasets.light_week(1, 50)
    content = first.file.read_bytes()
    first.file.unlink()
    (cache / (first.file.name + ".json")).unlink()

    assert datasets.light_week(1, 50).file.read_bytes() == content
    assert datasets.light_week(1, 50) == first


def test_user_sample_keeps_every_event_of_the_users_it_takes(cache: Path) -> None:
    week = datasets.light_week(1, 400)

    sample = datasets.user_sample(week, week.events // 4)

    whole = Counter(datasets.user_key(orjson.loads(line)) for line in datasets.read_lines(week.file))
    taken = Counter(datasets.user_key(orjson.loads(line)) for line in datasets.read_lines(sample.file))
    assert week.events // 4 <= sample.events < week.events
    assert all(taken[user] == whole[user] for user in taken)
    assert datasets.user_sample(week, week.events + 1) == week


def test_one_line_week_is_the_first_event_alone(cache: Path) -> None:
    week = datasets.light_week(1, 20)

    one = datasets.one_line_week(week)

    assert list(datasets.read_lines(one.file)) == [next(datasets.read_lines(week.file))]
    assert one.events == 1


def test_big_week_is_copies_of_its_source_with_users_of_their_own(cache: Path) -> None:
    source = datasets.light_week(1, 200)

    big = datasets.big_week(source, target_bytes=3 * source.compressed_bytes)

    events = [orjson.loads(line) for line in datasets.read_lines(big.file)]
    assert big.events == len(events) == 3 * source.events
    copies = [events[index * source.events : (index + 1) * source.events] for index in range(3)]
    users = [{datasets.user_key(event) for event in copy} for copy in copies]
    assert all(len(copy_users) == source.users for copy_users in users)
    assert not users[0] & users[1] and not users[0] & users[2] and not users[1] & users[2]
    assert big.users == 3 * source.users
    # Only the user identities differ: the same events and snapshots, copy after copy.
    for original, renamed in zip(copies[0], copies[2], strict=True):
        assert renamed["uuid"] == original["uuid"] and renamed["event_time"] == original["event_time"]
        assert renamed["amplitude_id"] == int(f"902{original['amplitude_id']}")
        renamed_properties = dict(renamed["user_properties"])
        if isinstance(original["user_properties"].get("ehr_id"), str) and original["user_properties"][
            "ehr_id"
        ].startswith("EHR-"):
            assert renamed_properties.pop("ehr_id") == "EHR-c2-" + original["user_properties"]["ehr_id"][4:]
            renamed_properties["ehr_id"] = original["user_properties"]["ehr_id"]
        assert renamed_properties == original["user_properties"]
