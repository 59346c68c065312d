"""``tables_after_export``: a week's tables follow its export with no person (CONTRACT §3).

Each test exports weeks for real (the simulator, S3, the blocking check in the same run, as the
schedule and backfills run them) and evaluates the table assets' automation conditions tick by
tick with ``evaluate_automation_conditions``, as ``tables_after_export_sensor`` does in the daemon.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    ExecuteInProcessResult,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

from amplitude_pipeline.definitions import defs as code_location
from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.checks import user_properties_keys_known
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.defs.user_properties.automation import tables_after_export, tables_after_export_sensor
from amplitude_pipeline.defs.user_properties.checks import user_properties_tables_checks
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import (
    NO_METRICS,
    SMALL_WEEK,
    amplitude_resource,
    dwh_repository,
    mappings_without,
    simulator,
    unused_amplitude_resource,
)
from amplitude_simulator import SimulatorServer

TABLE_KEYS = (AssetKey(PERMANENT_TABLE), AssetKey(CHANGEABLE_TABLE))
# Old weeks, far from the latest time window that AutomationCondition.eager() limits itself to.
WEEKS = ("2024-01-01", "2024-01-08", "2024-01-15")


def test_the_code_location_runs_the_automation_by_default_over_both_tables():
    sensor = code_location.resolve_sensor_def(tables_after_export_sensor.name)
    assert isinstance(sensor, AutomationConditionSensorDefinition)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.run_tags == DWH_LOAD_TAGS
    graph = code_location.resolve_asset_graph()
    assert sensor.asset_selection.resolve(graph) == set(TABLE_KEYS)
    for key in TABLE_KEYS:
        assert graph.get(key).automation_condition == tables_after_export
    # Only the table assets are automated, so Dagster adds no (stopped) default sensor of its own.
    assert {key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition} == set(
        TABLE_KEYS
    )
    names = [sensor.name for sensor in code_location.get_repository_def().sensor_defs]
    assert "default_automation_condition_sensor" not in names


@dataclass
class Automation:
    """The table assets' conditions, evaluated tick after tick against one instance."""

    instance: DagsterInstance
    definitions: Definitions
    cursor: AssetDaemonCursor | None = None
    ticks: list[dict[str, set[str]]] = field(default_factory=list)

    def tick(self) -> set[str]:
        """The weeks this tick requests; both tables are always requested together."""
        result = evaluate_automation_conditions(
            self.definitions,
            self.instance,
            asset_selection=AssetSelection.assets(*TABLE_KEYS),
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        requested = {key.to_user_string(): set(result.get_requested_partitions(key)) for key in TABLE_KEYS}
        self.ticks.append(requested)
        assert requested[PERMANENT_TABLE] == requested[CHANGEABLE_TABLE], requested
        return {week for week in requested[PERMANENT_TABLE] if week is not None}


@dataclass
class Stack:
    instance: DagsterInstance
    sim: SimulatorServer
    store: RawEventStore
    dwh: DWHRepository

    def export(
        self, week: str, *, dwh: DWHRepository | None = None, with_tables: bool = False
    ) -> ExecuteInProcessResult:
        """A run of amplitude_events for ``week`` with its blocking check (the schedule's run, or one
        run of a backfill); ``with_tables``: the run also selects the tables, as a backfill of all
        three assets does."""
        assets = [amplitude_events, user_properties_keys_known]
        if with_tables:
            assets += [user_properties_tables, user_properties_tables_checks]
        return materialize(
            assets,
            partition_key=week,
            instance=self.instance,
            resources=self._resources(dwh),
            raise_on_error=False,
        )

    def check_only(self, week: str) -> ExecuteInProcessResult:
        """The week's key check executed on its own (no new export), as from the UI."""
        job = Definitions(
            assets=[amplitude_events],
            asset_checks=[user_properties_keys_known],
            resources={**self._resources(None), "amplitude": unused_amplitude_resource()},
        ).resolve_implicit_global_asset_job_def()
        subset = job.get_subset(
            asset_selection=set(), asset_check_selection={user_properties_keys_known.check_key}
        )
        return subset.execute_in_process(partition_key=week, instance=self.instance)

    def load_tables(self, week: str) -> ExecuteInProcessResult:
        """What the requested run does: the week's tables and their checks."""
        return materialize(
            [user_properties_tables, user_properties_tables_checks],
            partition_key=week,
            instance=self.instance,
            resources=self._resources(None),
        )

    def automation(self) -> Automation:
        """The conditions of the code location's assets, evaluated against this instance."""
        definitions = Definitions(
            assets=[amplitude_events, user_properties_tables],
            asset_checks=[user_properties_keys_known, user_properties_tables_checks],
            resources=self._resources(None),
        )
        return Automation(self.instance, definitions)

    def _resources(self, dwh: DWHRepository | None) -> dict[str, object]:
        return {
            "amplitude": amplitude_resource(self.sim),
            "raw_event_store": self.store,
            "dwh": dwh or self.dwh,
            "field_mappings": (dwh or self.dwh).field_mappings,
            "metrics_pusher": NO_METRICS,
        }


@pytest.fixture
def stack(raw_event_store: RawEventStore, dwh: DWHRepository) -> Iterator[Stack]:
    with instance_for_test() as instance, simulator(SMALL_WEEK) as sim:
        yield Stack(instance, sim, raw_event_store, dwh)


@contextmanager
def mapping_without_city(stack: Stack, tmp_path: Path) -> Iterator[DWHRepository]:
    """A DWH resource whose mapping lacks ``city``, which every simulator event carries: the
    week's key check fails."""
    with dwh_repository(
        stack.dwh.db_schema, mappings_without(tmp_path / "field_mappings.yaml", "  city: {type: str}")
    ) as dwh:
        yield dwh


@pytest.mark.integration
def test_an_export_is_followed_by_that_weeks_tables_once(stack: Stack):
    automation = stack.automation()
    assert automation.tick() == set()

    assert stack.export(WEEKS[1]).success

    assert automation.tick() == {WEEKS[1]}
    # Requested once: the next ticks leave it alone, and so does the load itself.
    assert automation.tick() == set()
    assert stack.load_tables(WEEKS[1]).success
    assert automation.tick() == set()


@pytest.mark.integration
def test_every_week_of_a_backfill_gets_its_tables_not_only_the_latest(stack: Stack):
    automation = stack.automation()
    automation.tick()

    # A backfill's runs finish one after the other; a tick sees those finished since the last.
    assert stack.export(WEEKS[0]).success
    assert stack.export(WEEKS[1]).success
    assert automation.tick() == {WEEKS[0], WEEKS[1]}
    assert stack.export(WEEKS[2]).success
    assert automation.tick() == {WEEKS[2]}
    assert automation.tick() == set()


@pytest.mark.integration
def test_a_run_that_also_selected_the_tables_is_not_followed_by_a_second_load(stack: Stack):
    automation = stack.automation()
    automation.tick()

    assert stack.export(WEEKS[1], with_tables=True).success

    assert automation.tick() == set()
    assert automation.tick() == set()


@pytest.mark.integration
def test_a_week_whose_key_check_fails_waits_until_it_passes_after_a_new_export(stack: Stack, tmp_path: Path):
    automation = stack.automation()
    automation.tick()

    with mapping_without_city(stack, tmp_path) as broken:
        failed = stack.export(WEEKS[0], dwh=broken)
    [evaluation] = failed.get_asset_check_evaluations()
    assert (evaluation.passed, evaluation.partition) == (False, WEEKS[0])
    assert automation.tick() == set()
    # A later week that passes is loaded; the failed week is not loaded along with it.
    assert stack.export(WEEKS[1]).success
    assert automation.tick() == {WEEKS[1]}
    assert automation.tick() == set()

    # The mapping fixed, the week exported again: its check passes and its tables follow.
    assert stack.export(WEEKS[0]).success
    assert automation.tick() == {WEEKS[0]}
    assert automation.tick() == set()


@pytest.mark.integration
def test_a_failed_week_is_also_released_by_its_check_passing_on_its_own(stack: Stack, tmp_path: Path):
    automation = stack.automation()
    automation.tick()
    with mapping_without_city(stack, tmp_path) as broken:
        stack.export(WEEKS[0], dwh=broken)
    assert automation.tick() == set()

    # The mapping fixed, only the check executed again (the export itself was fine).
    [evaluation] = stack.check_only(WEEKS[0]).get_asset_check_evaluations()
    assert evaluation.passed

    assert automation.tick() == {WEEKS[0]}
    assert automation.tick() == set()
