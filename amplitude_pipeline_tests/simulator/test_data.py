"""Event generation: determinism, shape, timing and the users' property versions."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime, timedelta

import orjson
import pytest

from amplitude_simulator.data import (
    SimulatorConfig,
    day_files,
    day_layout,
    expected_lines,
    expected_week_lines,
    hour_files,
    population,
)

DAY = date(2024, 1, 8)  # a Monday inside the default history window
CONFIG = SimulatorConfig()
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
TIME_FIELDS = ("event_time", "client_event_time", "server_upload_time", "server_received_time")


def _events(config: SimulatorConfig, day: date) -> list[dict]:
    return [orjson.loads(line) for line in expected_lines(config, day)]


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f")


def test_the_same_config_generates_byte_identical_files() -> None:
    assert day_files(SimulatorConfig(), DAY) == day_files(SimulatorConfig(), DAY)


def test_generation_is_identical_across_processes_and_hash_seeds() -> None:
    script = (
        "import hashlib; from datetime import date; from amplitude_simulator.data import *; "
        "print(hashlib.sha256(b'\\n'.join(expected_lines(SimulatorConfig(), date(2024, 1, 8)))).hexdigest())"
    )
    local = hashlib.sha256(b"\n".join(expected_lines(CONFIG, DAY))).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60
        )
        assert result.stdout.strip() == local


def test_different_seeds_generate_different_data() -> None:
    other = SimulatorConfig(seed=7)
    assert expected_lines(other, DAY) != expected_lines(CONFIG, DAY)
    assert [u.amplitude_id for u in population(other)] != [u.amplitude_id for u in population(CONFIG)]


def test_a_day_holds_exactly_events_per_day_events() -> None:
    assert len(expected_lines(CONFIG, DAY)) == CONFIG.events_per_day
    assert len(expected_lines(SimulatorConfig(events_per_day=37), DAY)) == 37


def test_an_empty_day_has_no_files() -> None:
    config = SimulatorConfig(empty_days=frozenset({DAY}))
    assert day_files(config, DAY) == []
    assert expected_lines(config, DAY + timedelta(days=1))


def test_files_come_in_hour_then_part_order_and_some_hours_have_several_parts() -> None:
    files = day_files(CONFIG, DAY)
    keys = [(f.hour, f.part) for f in files]
    assert keys == sorted(keys)
    parts_per_hour = Counter(f.hour for f in files)
    for hour, parts in parts_per_hour.items():
        assert [f.part for f in files if f.hour == hour] == list(range(parts))
    assert max(parts_per_hour.values()) in (2, 3)
    assert all(f.lines for f in files)
    assert files[0].member_name(CONFIG.project_id) == f"187520/187520_2024-01-08_{files[0].hour}#0.json.gz"


def test_lines_are_single_json_objects_without_newlines() -> None:
    for line in expected_lines(CONFIG, DAY):
        assert b"\n" not in line
        assert isinstance(orjson.loads(line), dict)


def test_timestamps_are_amplitude_formatted_and_inside_their_day_and_hour() -> None:
    for hour_file in day_files(CONFIG, DAY):
        prefix = f"{DAY.isoformat()} {hour_file.hour:02d}:"
        for line in hour_file.lines:
            event = orjson.loads(line)
            for name in TIME_FIELDS:
                assert TIMESTAMP.fullmatch(event[name]), (name, event[name])
                assert event[name].startswith(prefix), (name, event[name], hour_file.hour)


def test_event_times_increase_across_hours_and_roughly_within_a_file() -> None:
    files = day_files(CONFIG, DAY)
    previous_hour_max = ""
    for hour in sorted({f.hour for f in files}):
        times = [orjson.loads(line)["event_time"] for f in files if f.hour == hour for line in f.lines]
        assert min(times) > previous_hour_max
        previous_hour_max = max(times)
    for hour_file in files:
        received = [orjson.loads(line)["server_received_time"] for line in hour_file.lines]
        assert received == sorted(received)


def test_events_look_like_export_api_events() -> None:
    events = _events(CONFIG, DAY)
    for event in events:
        assert UUID4.fullmatch(event["uuid"])
        assert UUID4.fullmatch(event["$insert_id"])
        assert isinstance(event["amplitude_id"], int)
        assert isinstance(event["session_id"], int)
        assert isinstance(event["event_id"], int)
        assert event["app"] == CONFIG.project_id
        assert isinstance(event["user_properties"], dict)
        assert isinstance(event["event_properties"], dict)
        assert event["platform"] in {"iOS", "Android", "Web"}
    assert len({event["uuid"] for event in events}) == len(events)
    event_types = {event["event_type"] for event in events}
    assert {"app_open", "screen_view", "appointment_booked", "lab_result_viewed"} <= event_types
    assert any(event["user_properties"].get("city") == "Москва" for event in events)


def test_about_85_percent_of_users_have_an_ehr_id_and_the_rest_are_anonymous() -> None:
    users = population(SimulatorConfig(users=1000))
    identified = [user for user in users if user.ehr_id is not None]
    assert 0.80 < len(identified) / len(users) < 0.90
    assert all(re.fullmatch(r"EHR-\d{6}", user.ehr_id or "") for user in identified)
    assert len({user.ehr_id for user in identified}) == len(identified)
    assert len({user.amplitude_id for user in users}) == len(users)
    anonymous_modes: Counter[str] = Counter()
    for user in users:
        properties = user.versions[0].user_properties
        if user.ehr_id is None:
            anonymous_modes["absent" if "ehr_id" not in properties else "null"] += 1
            assert properties.get("ehr_id") is None
            assert user.user_id is None
        else:
            assert properties["ehr_id"] == user.ehr_id
    assert anonymous_modes["absent"] > 0 and anonymous_modes["null"] > 0


def test_population_is_stable_when_it_grows() -> None:
    small, large = population(SimulatorConfig(users=10)), population(SimulatorConfig(users=50))
    assert large[:10] == small


def test_users_carry_one_to_three_versions_that_each_change_something() -> None:
    users = population(SimulatorConfig(users=500))
    counts = Counter(len(user.versions) for user in users)
    assert set(counts) == {1, 2, 3}
    changeable = (
        "age", "city", "language", "app_version", "subscription_status", "premium",
        "notifications_enabled", "weight", "height",
    )  # fmt: skip
    for user in users:
        assert user.versions[0].valid_from is None and user.versions[0].changes == ()
        for before, after in zip(user.versions, user.versions[1:], strict=False):
            assert after.valid_from is not None and after.changes
            assert before.valid_from is None or before.valid_from < after.valid_from
            differing = {
                key for key in changeable if before.user_properties.get(key) != after.user_properties.get(key)
            }
            assert differing, (user.index, after.changes)
            unchanged = set(before.user_properties) - set(changeable)
            assert {k: before.user_properties[k] for k in unchanged} == {
                k: after.user_properties[k] for k in unchanged
            }


@pytest.mark.usefixtures("non_utc_local_time")  # event_time has no zone: it is UTC
def test_every_event_carries_the_version_current_at_its_event_time() -> None:
    config = SimulatorConfig(users=20, events_per_day=3000)
    users = population(config)
    switching = max((user for user in users if len(user.versions) >= 2), key=lambda user: user.activity)
    switch = switching.versions[1].valid_from
    assert switch is not None
    by_amplitude_id = {user.amplitude_id: user for user in users}
    seen_versions = set()
    for event in _events(config, switch.date()):
        user = by_amplitude_id[event["amplitude_id"]]
        event_time = _parse_time(event["event_time"])
        assert event["user_properties"] == user.properties_at(event_time)
        if user is switching:
            seen_versions.add(switching.versions.index(switching.version_at(event_time)))
    assert seen_versions == {0, 1}  # the switch day shows the user before and after the switch


def test_ages_agree_with_birth_dates_across_birthdays() -> None:
    config = SimulatorConfig(users=500)
    checked_birthdays = 0
    for user in population(config):
        for version in user.versions:
            properties = version.user_properties
            age, birth = properties.get("age"), properties.get("birth_date")
            if not isinstance(age, int) or not isinstance(birth, str):
                continue
            born = date.fromisoformat(birth) if "-" in birth else datetime.strptime(birth, "%d.%m.%Y").date()
            moment = version.valid_from.date() if version.valid_from else config.history_start
            expected = moment.year - born.year - ((moment.month, moment.day) < (born.month, born.day))
            assert age == expected, (user.index, birth, moment)
            checked_birthdays += "birthday" in version.changes
    assert checked_birthdays > 0


def test_week_lines_concatenate_the_seven_days() -> None:
    config = SimulatorConfig(users=10, events_per_day=20, empty_days=frozenset({DAY + timedelta(days=2)}))
    expected = [line for offset in range(7) for line in expected_lines(config, DAY + timedelta(days=offset))]
    assert expected_week_lines(config, DAY) == expected
    assert len(expected) == 6 * 20


def test_a_day_of_the_default_volume_generates_well_under_a_second() -> None:
    fresh_day = date(2024, 2, 14)
    started = time.perf_counter()
    lines = expected_lines(CONFIG, fresh_day)
    assert len(lines) == 2000
    assert time.perf_counter() - started < 1.0


def test_large_volumes_are_planned_without_generating_and_generated_per_hour() -> None:
    config = SimulatorConfig(events_per_day=200_000)
    layout = day_layout(config, DAY)
    assert sum(part.events for part in layout) == 200_000
    quiet_hour = min(
        {part.hour for part in layout}, key=lambda h: sum(p.events for p in layout if p.hour == h)
    )
    files = hour_files(config, DAY, quiet_hour)
    assert sum(len(f.lines) for f in files) == sum(p.events for p in layout if p.hour == quiet_hour)


@pytest.mark.parametrize(
    "changes",
    [{"users": 0}, {"events_per_day": -1}, {"history_days": 365}, {"too_much_data_hours": {(DAY, 24)}}],
)
def test_invalid_configs_are_rejected(changes: dict) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**changes)
