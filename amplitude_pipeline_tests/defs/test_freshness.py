"""``freshness`` checks and ``freshness_sensor``: late weeks turn red by themselves, and back."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    build_sensor_context,
    instance_for_test,
)

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs import freshness
from amplitude_pipeline.defs.freshness import freshness_sensor
from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.load.freshness import latest_due_week
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE

code_location = load_code_location()

WEEK = "2024-01-08"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


class Sensor:
    def __init__(self, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
        self.instance = instance
        self.cursor: str | None = None
        self.now = datetime.now(UTC)
        monkeypatch.setattr(freshness, "current_time", lambda: self.now)

    def tick(self) -> dict[tuple[str, str | None], AssetCheckEvaluation]:
        context = build_sensor_context(
            instance=self.instance, cursor=self.cursor, repository_def=code_location.get_repository_def()
        )
        result = freshness_sensor.evaluate_tick(context)
        assert not result.run_requests
        self.cursor = result.cursor
        events = [event for event in result.asset_events if isinstance(event, AssetCheckEvaluation)]
        assert len(events) == len(result.asset_events)
        return {(event.asset_key.to_user_string(), event.partition): event for event in events}

    def materialize(self, asset: str, week: str) -> None:
        self.instance.report_runless_asset_event(AssetMaterialization(asset_key=asset, partition=week))


def test_the_latest_due_week_is_reported_late_once_and_fresh_once_exported(instance, monkeypatch):
    sensor = Sensor(instance, monkeypatch)
    due = latest_due_week(sensor.now, SETTINGS.start_date)
    assert due is not None
    week = due.isoformat()

    late = sensor.tick()
    assert list(late) == [("amplitude_events", week)]
    assert not late[("amplitude_events", week)].passed
    assert f"week {week} is not exported" in (late[("amplitude_events", week)].description or "")
    assert sensor.tick() == {}  # reported once, while it stays late

    sensor.materialize("amplitude_events", week)
    fresh = sensor.tick()
    assert fresh[("amplitude_events", week)].passed
    # The export is newer than the week's tables, but not for two hours yet.
    assert [key for key in fresh if key[0] != "amplitude_events"] == []
    assert sensor.tick() == {}


def test_tables_that_lag_their_export_by_two_hours_turn_late_then_fresh_when_loaded(instance, monkeypatch):
    sensor = Sensor(instance, monkeypatch)
    sensor.tick()  # the latest week's export, whatever it is, is not this test's business
    sensor.materialize("amplitude_events", WEEK)

    sensor.now += timedelta(hours=1, minutes=59)
    assert [key for key in sensor.tick() if key[1] == WEEK] == []

    sensor.now += timedelta(minutes=2)
    late = {key: event for key, event in sensor.tick().items() if key[1] == WEEK}
    assert set(late) == {(PERMANENT_TABLE, WEEK), (CHANGEABLE_TABLE, WEEK)}
    assert not any(event.passed for event in late.values())
    assert sensor.tick() == {}

    for table in (PERMANENT_TABLE, CHANGEABLE_TABLE):
        sensor.materialize(table, WEEK)
    fresh = sensor.tick()
    assert {key: event.passed for key, event in fresh.items()} == {
        (PERMANENT_TABLE, WEEK): True,
        (CHANGEABLE_TABLE, WEEK): True,
    }
    assert sensor.tick() == {}


def test_the_checks_are_weekly_and_the_sensor_runs_by_default():
    graph = code_location.resolve_asset_graph()
    for asset in ("amplitude_events", PERMANENT_TABLE, CHANGEABLE_TABLE):
        key = next(
            key
            for key in graph.asset_check_keys
            if key.asset_key == AssetKey(asset) and key.name == "freshness"
        )
        assert graph.get(key).partitions_def is not None
    assert freshness_sensor.default_status.value == "RUNNING"
