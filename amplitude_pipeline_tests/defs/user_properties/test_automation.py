"""``tables_after_export_sensor``: a week's tables follow its export with no person (CONTRACT §3),
one week at a time in week order (CONTRACT §7).

Each test exports weeks for real (the simulator, S3, the blocking check in the same run, as the
schedule and backfills run them) and evaluates the sensor tick by tick against the same instance,
running each requested run the way the daemon would (a run key is launched once).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    Definitions,
    ExecuteInProcessResult,
    SensorDefinition,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from dagster._core.events import AssetMaterializationPlannedData
from dagster._core.test_utils import create_run_for_test

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.checks import user_properties_keys_known
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.defs.user_properties.automation import EVENTS, tables_after_export_sensor
from amplitude_pipeline.defs.user_properties.checks import user_properties_tables_checks
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    amplitude_resource,
    mappings_without,
    simulator,
    unused_amplitude_resource,
)
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.support import NewDWH, pipeline_resources
from amplitude_simulator import SimulatorServer

code_location = load_code_location()

TABLE_KEYS = (AssetKey(PERMANENT_TABLE), AssetKey(CHANGEABLE_TABLE))
WEEKS = ("2024-01-01", "2024-01-08", "2024-01-15")


def test_the_code_location_runs_the_sensor_by_default_over_both_tables():
    sensor = code_location.resolve_sensor_def(tables_after_export_sensor.name)
    assert isinstance(sensor, SensorDefinition)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.asset_selection is not None
    assert sensor.asset_selection.resolve(code_location.resolve_asset_graph()) == set(TABLE_KEYS)
    # No declarative automation any more, so no default automation sensor of Dagster's own.
    graph = code_location.resolve_asset_graph()
    assert not [key for key in graph.get_all_asset_keys() if graph.get(key).automation_condition]
    names = [sensor.name for sensor in code_location.get_repository_def().sensor_defs]
    assert "default_automation_condition_sensor" not in names


@dataclass
class Automation:
    """The sensor's ticks against one instance; each requested run is run as the daemon would."""

    stack: "Stack"
    definitions: Definitions
    launched_run_keys: set[str] = field(default_factory=set)
    skip_reasons: list[str] = field(default_factory=list)

    def tick(self, *, run: bool = True, dwh: DWHRepository | None = None) -> set[str]:
        """The weeks this tick requests; ``run``: also run them (a run key only once)."""
        context = build_sensor_context(
            instance=self.stack.instance, repository_def=self.definitions.get_repository_def()
        )
        result = tables_after_export_sensor.evaluate_tick(context)
        if result.skip_message:
            self.skip_reasons.append(result.skip_message)
        weeks = set()
        for request in result.run_requests or []:
            assert set(request.asset_selection or ()) == set(TABLE_KEYS), request
            assert DWH_LOAD_TAGS.items() <= request.tags.items()
            assert request.run_key is not None
            if request.run_key in self.launched_run_keys:
                continue  # the daemon launches a run key once
            self.launched_run_keys.add(request.run_key)
            assert request.partition_key is not None
            weeks.add(request.partition_key)
            if run:
                self.stack.load_tables(request.partition_key, dwh=dwh, raise_on_error=False)
        return weeks

    @property
    def last_skip_reason(self) -> str:
        return self.skip_reasons[-1]


@dataclass
class Stack:
    instance: DagsterInstance
    sim: SimulatorServer
    store: RawEventStore
    dwh: DWHRepository
    new_dwh: NewDWH

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

    def export_in_progress(self, week: str) -> DagsterRun:
        """A run that has set out to export ``week`` and not finished (its planned event only)."""
        run = create_run_for_test(self.instance, job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED)
        planned = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            job_name=run.job_name,
            event_specific_data=AssetMaterializationPlannedData(EVENTS, partition=week),
        )
        self.instance.report_dagster_event(planned, run_id=run.run_id)
        return run

    def finish(self, run: DagsterRun) -> None:
        self.instance.report_run_failed(run, "the test's stand-in for a run that ended")

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

    def load_tables(
        self, week: str, *, dwh: DWHRepository | None = None, raise_on_error: bool = True
    ) -> ExecuteInProcessResult:
        """What the requested run does: the week's tables and their checks."""
        return materialize(
            [user_properties_tables, user_properties_tables_checks],
            partition_key=week,
            instance=self.instance,
            resources=self._resources(dwh),
            raise_on_error=raise_on_error,
            tags=DWH_LOAD_TAGS,
        )

    def automation(self) -> Automation:
        """The conditions of the code location's assets, evaluated against this instance."""
        definitions = Definitions(
            assets=[amplitude_events, user_properties_tables],
            asset_checks=[user_properties_keys_known, user_properties_tables_checks],
            resources=self._resources(None),
        )
        return Automation(self, definitions)

    def _resources(self, dwh: DWHRepository | None) -> dict[str, object]:
        return pipeline_resources(
            store=self.store, dwh=dwh or self.dwh, amplitude=amplitude_resource(self.sim)
        )


@pytest.fixture
def stack(raw_event_store: RawEventStore, dwh: DWHRepository, new_dwh: NewDWH) -> Iterator[Stack]:
    with instance_for_test() as instance, simulator(SMALL_WEEK) as sim:
        yield Stack(instance, sim, raw_event_store, dwh, new_dwh)


@contextmanager
def mapping_without_city(stack: Stack, tmp_path: Path) -> Iterator[DWHRepository]:
    """The stack's tables seen through a mapping that lacks ``city``, which every simulator event
    carries: the week's key check fails, and so does a load."""
    mappings = mappings_without(tmp_path / "field_mappings.yaml", "  city: {type: str}")
    yield stack.new_dwh(mappings, schema=stack.dwh.db_schema, create=False)


@pytest.mark.integration
def test_an_export_is_followed_by_that_weeks_tables_once(stack: Stack):
    automation = stack.automation()
    assert automation.tick() == set()

    assert stack.export(WEEKS[1]).success

    assert automation.tick() == {WEEKS[1]}
    assert automation.tick() == set()
    assert "every exported week" in automation.last_skip_reason


@pytest.mark.integration
def test_weeks_exported_before_the_sensor_ever_ran_are_loaded_in_week_order(stack: Stack):
    # Exported before the first evaluation, the sensor off, the daemon down: the same state.
    for week in reversed(WEEKS):
        assert stack.export(week).success
    automation = stack.automation()

    assert [automation.tick() for _ in range(4)] == [{WEEKS[0]}, {WEEKS[1]}, {WEEKS[2]}, set()]


@pytest.mark.integration
def test_a_later_week_exported_first_waits_for_the_earlier_export(stack: Stack):
    automation = stack.automation()
    assert stack.export(WEEKS[2]).success
    running = stack.export_in_progress(WEEKS[1])

    assert automation.tick() == set()
    assert f"week {WEEKS[1]} waits: its export is running" in automation.last_skip_reason

    stack.finish(running)
    assert stack.export(WEEKS[1]).success
    assert [automation.tick() for _ in range(3)] == [{WEEKS[1]}, {WEEKS[2]}, set()]


@pytest.mark.integration
def test_a_run_that_also_selected_the_tables_is_not_followed_by_a_second_load(stack: Stack):
    automation = stack.automation()

    assert stack.export(WEEKS[1], with_tables=True).success

    assert automation.tick() == set()


@pytest.mark.integration
def test_a_week_whose_key_check_fails_holds_back_later_weeks_until_it_passes(stack: Stack, tmp_path: Path):
    automation = stack.automation()
    with mapping_without_city(stack, tmp_path) as broken:
        failed = stack.export(WEEKS[0], dwh=broken)
    [evaluation] = failed.get_asset_check_evaluations()
    assert (evaluation.passed, evaluation.partition) == (False, WEEKS[0])
    assert stack.export(WEEKS[1]).success

    assert automation.tick() == set()
    assert f"week {WEEKS[0]} waits: user_properties_keys_known has not passed" in automation.last_skip_reason

    # The mapping fixed, the week exported again: its tables follow, then the later week's.
    assert stack.export(WEEKS[0]).success
    assert [automation.tick() for _ in range(3)] == [{WEEKS[0]}, {WEEKS[1]}, set()]


@pytest.mark.integration
def test_a_failed_week_is_also_released_by_its_check_passing_on_its_own(stack: Stack, tmp_path: Path):
    automation = stack.automation()
    with mapping_without_city(stack, tmp_path) as broken:
        stack.export(WEEKS[0], dwh=broken)
    assert automation.tick() == set()

    # The mapping fixed, only the check executed again (the export itself was fine).
    [evaluation] = stack.check_only(WEEKS[0]).get_asset_check_evaluations()
    assert evaluation.passed

    assert automation.tick() == {WEEKS[0]}
    assert automation.tick() == set()


@pytest.mark.integration
def test_a_failed_table_run_is_not_started_again_and_holds_back_later_weeks(stack: Stack, tmp_path: Path):
    automation = stack.automation()
    assert stack.export(WEEKS[0]).success
    assert stack.export(WEEKS[1]).success
    # The load fails (its mapping lacks a key the check's mapping has), after the check passed.
    with mapping_without_city(stack, tmp_path) as broken:
        assert automation.tick(dwh=broken) == {WEEKS[0]}

    for _ in range(3):
        assert automation.tick() == set()
    assert f"week {WEEKS[0]} waits: run " in automation.last_skip_reason
    assert "re-execute that run" in automation.last_skip_reason

    # Someone re-executes it (here: materializes the week's tables): the later week follows.
    assert stack.load_tables(WEEKS[0]).success
    assert [automation.tick() for _ in range(2)] == [{WEEKS[1]}, set()]


@pytest.mark.integration
def test_a_new_export_of_a_loaded_week_is_loaded_again(stack: Stack):
    automation = stack.automation()
    assert stack.export(WEEKS[0]).success
    assert automation.tick() == {WEEKS[0]}

    assert stack.export(WEEKS[0]).success

    assert automation.tick() == {WEEKS[0]}
    assert automation.tick() == set()


@pytest.mark.integration
def test_tables_loaded_by_the_sensor_equal_a_serial_load_in_week_order(stack: Stack):
    automation = stack.automation()
    # A backfill's exports all start, then finish out of order, the sensor ticking in between.
    running = {week: stack.export_in_progress(week) for week in WEEKS}
    for week in (WEEKS[2], WEEKS[0], WEEKS[1]):
        stack.finish(running[week])
        assert stack.export(week).success
        automation.tick()
    while automation.tick():
        pass

    serial = stack.new_dwh()
    for week in WEEKS:
        assert stack.load_tables(week, dwh=serial).success
    for table in ("permanent", "changeable"):
        assert rows(stack.dwh, table) == rows(serial, table)
        assert rows(stack.dwh, table)
