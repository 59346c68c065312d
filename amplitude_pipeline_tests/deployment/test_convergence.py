"""Tables converge on the exports whatever the timing, in week order, on the production topology
(issue 15): a real code server, webserver and ``dagster-daemon`` with deploy/dagster.yaml.

One deployment, tests in order, each week exported once: before the daemon ever ran, while it
was down, while the sensor was off, while the code server was being redeployed, then a six-week
backfill of the exports alone, whose tables must equal a serial load of the same objects in week
order. Last, a run that dies with its code server is marked failed and retried within minutes.
"""

import itertools
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from dagster import AssetKey, DagsterRun, DagsterRunStatus, RunsFilter, materialize
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, PARTITION_NAME_TAG, SENSOR_NAME_TAG

from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.storage.dwh import PERMANENT_TABLE
from amplitude_pipeline_tests.deployment.support import (
    BACKFILL_DONE,
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    LAUNCH_RUN,
    LOCATION_NAME,
    REPOSITORY_NAME,
    Deployment,
    deployed,
    wait_for,
)
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.support import pipeline_resources
from amplitude_simulator.server import Fault

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATEST_WEEK = date.fromisoformat(weekly_partitions.get_last_partition_key() or "")
WEEKS = [(LATEST_WEEK - timedelta(weeks=n)).isoformat() for n in range(10, 0, -1)]
SENSOR = "tables_after_export_sensor"
WAIT_SECONDS = 300
UNFINISHED = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
}


@pytest.fixture(scope="module")
def deployment(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # No daemon yet: the first test exports before the automation ever evaluated anything.
    with deployed(tmp_path_factory, start_week=WEEKS[0], daemon=False) as started:
        yield started


def export_by_hand(deployment: Deployment, week: str) -> None:
    """``dagster asset materialize`` of the week's export: in the CLI's process, no daemon needed."""
    done = deployment.topology.cli(
        "asset",
        "materialize",
        "-m",
        "amplitude_pipeline",
        "--select",
        "amplitude_events",
        "--partition",
        week,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def storage_ids(deployment: Deployment, asset: str) -> dict[str, int]:
    return dict(
        deployment.instance.get_latest_storage_id_by_partition(
            AssetKey(asset), DagsterEventType.ASSET_MATERIALIZATION
        )
    )


def tables_follow(deployment: Deployment, *weeks: str) -> list[DagsterRun]:
    """Wait until each week's tables are newer than its export; the sensor's runs that loaded them."""

    def followed() -> bool | None:
        deployment.alive()
        exports, tables = (
            storage_ids(deployment, "amplitude_events"),
            storage_ids(deployment, PERMANENT_TABLE),
        )
        if not all(tables.get(week, 0) > exports[week] for week in weeks):
            return None
        # And the sensor's runs are over (their checks run after the tables).
        runs = table_runs(deployment, *weeks)
        finished = {run.tags[PARTITION_NAME_TAG] for run in runs if run.status not in UNFINISHED}
        return True if finished >= set(weeks) and len(finished) == len(runs) else None

    wait_for(f"the tables of {', '.join(weeks)}", followed, WAIT_SECONDS, deployment.failure_report)
    return table_runs(deployment, *weeks)


def table_runs(deployment: Deployment, *weeks: str) -> list[DagsterRun]:
    runs = deployment.instance.get_runs(filters=RunsFilter(tags={SENSOR_NAME_TAG: SENSOR}))
    return sorted(
        (run for run in runs if run.tags.get(PARTITION_NAME_TAG) in weeks),
        key=lambda run: run.tags[PARTITION_NAME_TAG],
    )


def sensor_command(deployment: Deployment, action: str) -> None:
    done = deployment.topology.cli("sensor", action, SENSOR, "-w", str(deployment.topology.workspace))
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


@pytest.mark.timeout(600)
def test_an_export_made_before_the_daemon_ever_ran_gets_its_tables_once_it_starts(deployment):
    export_by_hand(deployment, WEEKS[0])

    deployment.topology.start_daemon()

    [run] = tables_follow(deployment, WEEKS[0])
    assert run.status == DagsterRunStatus.SUCCESS
    assert DWH_LOAD_TAGS.items() <= run.tags.items()


@pytest.mark.timeout(600)
def test_an_export_made_while_the_daemon_was_down_gets_its_tables_when_it_is_back(deployment):
    deployment.topology.stop_daemon()
    export_by_hand(deployment, WEEKS[1])

    deployment.topology.start_daemon()

    assert [run.status for run in tables_follow(deployment, WEEKS[1])] == [DagsterRunStatus.SUCCESS]


@pytest.mark.timeout(600)
def test_weeks_exported_while_the_sensor_was_off_are_loaded_when_it_is_turned_on(deployment):
    sensor_command(deployment, "stop")
    export_by_hand(deployment, WEEKS[2])
    time.sleep(45)  # more than a tick: nothing may load while the sensor is off
    assert table_runs(deployment, WEEKS[2]) == []

    sensor_command(deployment, "start")

    assert [run.status for run in tables_follow(deployment, WEEKS[2])] == [DagsterRunStatus.SUCCESS]


@pytest.mark.timeout(600)
def test_an_export_made_while_the_code_location_was_redeployed_gets_its_tables(deployment):
    deployment.topology.kill_code_server()
    export_by_hand(deployment, WEEKS[3])

    deployment.topology.start_code_server()

    assert [run.status for run in tables_follow(deployment, WEEKS[3])] == [DagsterRunStatus.SUCCESS]


@pytest.mark.timeout(1200)
def test_a_backfill_of_the_exports_loads_the_weeks_in_order_as_a_serial_load_would(deployment, new_dwh):
    backfilled = WEEKS[4:]
    launched = deployment.topology.graphql(
        LAUNCH_BACKFILL,
        {"params": {"assetSelection": [{"path": ["amplitude_events"]}], "partitionNames": backfilled}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def backfill_done() -> str | None:
        answer = deployment.topology.graphql(BACKFILL_STATUS, {"id": launched["backfillId"]})
        status = answer["partitionBackfillOrError"]["status"]
        return status if status in BACKFILL_DONE else None

    assert (
        wait_for("the backfill", backfill_done, WAIT_SECONDS, deployment.failure_report)
        == "COMPLETED_SUCCESS"
    )
    runs = tables_follow(deployment, *backfilled)

    # One run per week, each started after the previous week's run ended: in week order.
    assert [run.tags[PARTITION_NAME_TAG] for run in runs] == backfilled
    records = [deployment.instance.get_run_record_by_id(run.run_id) for run in runs]
    assert all(record is not None and record.start_time and record.end_time for record in records)
    for earlier, later in itertools.pairwise(records):
        assert earlier is not None and later is not None
        assert earlier.end_time is not None and later.start_time is not None
        assert earlier.end_time <= later.start_time

    # The same ten weekly objects, loaded one by one in week order into a schema of their own.
    serial = new_dwh()
    for week in WEEKS:
        assert materialize(
            [user_properties_tables],
            partition_key=week,
            resources=pipeline_resources(store=deployment.store, dwh=serial),
        ).success
    deployed_tables = new_dwh(schema=deployment.dwh_schema, create=False)
    for table in ("permanent", "changeable"):
        assert rows(deployed_tables, table) == rows(serial, table)
        assert rows(serial, table)


@pytest.mark.timeout(900)
def test_a_run_that_dies_with_its_code_server_is_failed_within_minutes_and_retried(deployment):
    # An export stuck on a slow Export API, holding a DWH-load slot (the tag the queue limits).
    deployment.simulator.add_faults(Fault.slow(seconds=600, count=50))
    launched = deployment.topology.graphql(
        LAUNCH_RUN,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION_NAME,
                    "repositoryName": REPOSITORY_NAME,
                    "jobName": "export_amplitude_events",
                },
                "executionMetadata": {
                    "tags": [
                        {"key": PARTITION_NAME_TAG, "value": LATEST_WEEK.isoformat()},
                        *({"key": key, "value": value} for key, value in DWH_LOAD_TAGS.items()),
                    ]
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def stuck_in_the_api() -> bool | None:
        run = deployment.run(run_id)
        return True if run.status == DagsterRunStatus.STARTED and deployment.simulator.requests else None

    wait_for(
        "the export to be stuck in the Export API", stuck_in_the_api, WAIT_SECONDS, deployment.failure_report
    )

    # Its machine goes away: the code server and the run with it; a new code server takes over.
    deployment.topology.kill_code_server()
    deployment.simulator.clear_faults()
    killed_at = time.monotonic()
    deployment.topology.start_code_server()

    def failed() -> bool | None:
        return True if deployment.run(run_id).status == DagsterRunStatus.FAILURE else None

    wait_for("run monitoring to fail the dead run", failed, 240, deployment.failure_report)
    assert time.monotonic() - killed_at < 240
    in_progress = deployment.instance.get_runs(
        filters=RunsFilter(tags=DWH_LOAD_TAGS, statuses=list(UNFINISHED))
    )
    assert run_id not in {run.run_id for run in in_progress}, "the dead run still holds its DWH-load slot"

    def retried() -> DagsterRun | None:
        retries = deployment.instance.get_runs(filters=RunsFilter(tags={PARENT_RUN_ID_TAG: run_id}))
        return retries[0] if retries and retries[0].status == DagsterRunStatus.SUCCESS else None

    retry = wait_for("the run's retry to succeed", retried, WAIT_SECONDS, deployment.failure_report)
    assert retry.tags[PARTITION_NAME_TAG] == LATEST_WEEK.isoformat()
