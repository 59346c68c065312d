"""The deployment's topology on this machine, end to end with a real daemon (issue 8, item 6).

A code server (``dagster code-server start``), ``dagster-webserver`` and ``dagster-daemon`` run as
separate processes with the production instance (deploy/dagster.yaml) in a database of their own
on the stack's PostgreSQL, the stack's S3 under a prefix of their own, a DWH schema of their own,
and an Amplitude simulator with small weeks. Everything is asked of them the way an operator or a
client would: through the webserver's GraphQL API; what they did is read back from S3, the DWH and
the instance.

The code location's weekly partitions start three weeks before the latest finished week: the
backfill takes those three, the automation test the latest one.
"""

import gzip
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from dagster import AssetKey, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, SENSOR_NAME_TAG

from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    joined_lines,
    object_lines_bytes,
)
from amplitude_pipeline_tests.deployment.support import (
    BACKFILL_DONE,
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    LAUNCH_RUN,
    LOCATION_NAME,
    REPOSITORY_NAME,
    START_SENSOR,
    STOP_SENSOR,
    Deployment,
    deployed,
    wait_for,
)
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_simulator import expected_week_lines

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TABLES = (PERMANENT_TABLE, CHANGEABLE_TABLE)
# Startup of three processes on a busy 2-core machine, then the work, then the daemon's intervals
# (30 s for the sensors, the backfill daemon's iterations): bounded, with room to spare.
TEST_TIMEOUT = 480
WAIT_SECONDS = 360
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
LATEST_WEEK = date.fromisoformat(weekly_partitions.get_last_partition_key() or "")
BACKFILL_WEEKS = [(LATEST_WEEK - timedelta(weeks=n)).isoformat() for n in (3, 2, 1)]


@pytest.fixture(scope="module")
def deployment(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployed(tmp_path_factory, start_week=BACKFILL_WEEKS[0]) as started:
        yield started


def asset_keys(*names: str) -> list[dict[str, list[str]]]:
    return [{"path": [name]} for name in names]


@pytest.mark.timeout(TEST_TIMEOUT)
def test_a_backfill_launched_through_the_webserver_exports_the_weeks_and_builds_their_tables(deployment):
    topology = deployment.topology
    launched = topology.graphql(
        LAUNCH_BACKFILL,
        {
            "params": {
                "assetSelection": asset_keys("amplitude_events", *TABLES),
                "partitionNames": BACKFILL_WEEKS,
                "tags": [{"key": key, "value": value} for key, value in DWH_LOAD_TAGS.items()],
                "title": "topology test",
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def backfill_runs() -> list[DagsterRun]:
        return list(deployment.instance.get_runs(filters=RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})))

    def finished() -> str | None:
        deployment.alive()
        answer = topology.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert answer["__typename"] == "PartitionBackfill", answer
        return answer["status"] if answer["status"] in BACKFILL_DONE else None

    status = wait_for(
        f"backfill {backfill_id}", finished, WAIT_SECONDS, lambda: deployment.failure_report(backfill_runs())
    )

    runs = backfill_runs()
    assert status == "COMPLETED_SUCCESS", deployment.failure_report(runs)
    assert {run.tags[PARTITION_NAME_TAG] for run in runs} == set(BACKFILL_WEEKS)
    assert all(run.status == DagsterRunStatus.SUCCESS for run in runs), deployment.failure_report(runs)
    # The tables depend on their previous week: the backfill loads them one week after another.
    table_runs = [
        deployment.instance.get_run_record_by_id(run.run_id)
        for run in runs
        if set(run.asset_selection or ()) & {AssetKey(table) for table in TABLES}
    ]
    loads = sorted(
        (record.start_time, record.dagster_run.tags[PARTITION_NAME_TAG]) for record in table_runs if record
    )
    assert [week for _, week in loads] == BACKFILL_WEEKS
    assert all(DWH_LOAD_TAGS.items() <= run.tags.items() for run in runs)
    expected_ehr_ids: set[str] = set()
    for week in BACKFILL_WEEKS:
        lines = expected_week_lines(SMALL_WEEK, date.fromisoformat(week))
        # The weekly objects hold the simulator's events byte for byte, days and hours in order.
        assert object_lines_bytes(deployment.store, deployment.store.week_key(week)) == joined_lines(lines)
        for table in TABLES:
            found = deployment.materialization_metadata(table, week)
            assert found is not None, (table, week)
            _, metadata = found
            assert metadata["file_key"] == deployment.store.week_key(week)
            assert metadata["last_successful_line"] == len(lines) - 1
        records = [orjson.loads(line) for line in lines]
        expected_ehr_ids |= {
            r["user_properties"]["ehr_id"] for r in records if r["user_properties"].get("ehr_id")
        }
    assert expected_ehr_ids
    assert expected_ehr_ids <= deployment.ehr_ids(PERMANENT_TABLE)
    assert expected_ehr_ids <= deployment.ehr_ids(CHANGEABLE_TABLE)


def patients(day: str, *ehr_ids: str) -> list[dict[str, Any]]:
    return [
        event(f"{day} {9 + i:02d}:00:00", ehr_id=ehr_id, amplitude_id=900_000 + i)
        for i, ehr_id in enumerate(ehr_ids)
    ]


@pytest.mark.timeout(TEST_TIMEOUT)
def test_files_dropped_under_the_watched_prefix_end_up_in_the_tables(deployment):
    weekly_ids = {"TOPO-WEEKLY-1", "TOPO-WEEKLY-2"}
    export_ids = {"TOPO-EXPORT-1", "TOPO-EXPORT-2", "TOPO-EXPORT-3"}
    weekly_file = upload_events(
        deployment.watched, "2024-01-15.jsonl.gz", patients("2024-01-15", *sorted(weekly_ids))
    )
    # Amplitude's own S3 export: {prefix}/{project_id}/{project_id}_{YYYY-MM-DD}_{H}#{n}.json.gz
    export_file = upload_events(
        deployment.watched,
        "187520/187520_2024-01-22_5#0.json.gz",
        patients("2024-01-22", *sorted(export_ids)),
    )
    # Not an event file: ignored.
    deployment.watched.client.put_object(
        Bucket=deployment.watched.bucket, Key=f"{deployment.watched.prefix}/_SUCCESS", Body=gzip.compress(b"")
    )

    started = deployment.topology.graphql(
        START_SENSOR,
        {
            "selector": {
                "repositoryLocationName": LOCATION_NAME,
                "repositoryName": REPOSITORY_NAME,
                "sensorName": "s3_new_objects_sensor",
            }
        },
    )["startSensor"]
    assert started["__typename"] == "Sensor", started
    assert started["sensorState"]["status"] == "RUNNING"

    def sensor_runs() -> list[DagsterRun]:
        return list(
            deployment.instance.get_runs(filters=RunsFilter(tags={SENSOR_NAME_TAG: "s3_new_objects_sensor"}))
        )

    def loaded() -> bool | None:
        """Every run the sensor requested is over, and the rows are there or a run failed."""
        deployment.alive()
        runs = sensor_runs()
        if not runs or any(run.status not in FINISHED for run in runs):
            return None
        failed = any(run.status != DagsterRunStatus.SUCCESS for run in runs)
        return True if failed or weekly_ids | export_ids <= deployment.ehr_ids(PERMANENT_TABLE) else None

    try:
        wait_for(
            "s3_new_objects_sensor's runs to load the dropped files",
            loaded,
            WAIT_SECONDS,
            lambda: deployment.failure_report(sensor_runs()),
        )
    finally:
        stopped = deployment.topology.graphql(STOP_SENSOR, {"id": started["sensorState"]["id"]})["stopSensor"]
        assert stopped["__typename"] == "StopSensorMutationResult", stopped

    runs = sensor_runs()
    assert all(run.status == DagsterRunStatus.SUCCESS for run in runs), deployment.failure_report(runs)
    assert all(run.job_name == "load_s3_event_files" for run in runs)
    assert all(DWH_LOAD_TAGS.items() <= run.tags.items() for run in runs)
    assert weekly_ids | export_ids <= deployment.ehr_ids(PERMANENT_TABLE)
    assert weekly_ids | export_ids <= deployment.ehr_ids(CHANGEABLE_TABLE)
    assert {key for run in runs for key in requested_keys(run)} == {weekly_file, export_file}


def requested_keys(run: DagsterRun) -> list[str]:
    """The S3 keys in a load_s3_event_files run's config."""
    config: dict[str, Any] = dict(run.run_config)
    return [file["key"] for file in config["ops"]["load_s3_event_files"]["config"]["files"]]


@pytest.mark.timeout(TEST_TIMEOUT)
def test_an_export_of_the_latest_week_is_followed_by_that_weeks_tables_with_no_person_acting(deployment):
    week = LATEST_WEEK.isoformat()
    launched = deployment.topology.graphql(
        LAUNCH_RUN,
        {
            "params": {
                # What the weekly schedule launches.
                "selector": {
                    "repositoryLocationName": LOCATION_NAME,
                    "repositoryName": REPOSITORY_NAME,
                    "jobName": "export_amplitude_events",
                },
                "executionMetadata": {"tags": [{"key": PARTITION_NAME_TAG, "value": week}]},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    export_run_id = launched["run"]["runId"]

    def tables_built() -> list[str] | None:
        deployment.alive()
        export_run = deployment.run(export_run_id)
        if export_run.status in {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}:
            pytest.fail(f"the export failed\n{deployment.failure_report([export_run])}")
        found = [deployment.materialization_metadata(table, week) for table in TABLES]
        if any(item is None for item in found):
            return None
        run_ids = sorted({item[0] for item in found if item is not None})
        if any(deployment.run(run_id).status not in FINISHED for run_id in run_ids):
            return None
        return run_ids

    def report() -> str:
        automation_runs = [
            run
            for run in deployment.instance.get_runs(filters=RunsFilter(tags={PARTITION_NAME_TAG: week}))
            if run.run_id != export_run_id
        ]
        return deployment.failure_report([deployment.run(export_run_id), *automation_runs])

    table_run_ids = wait_for(f"week {week}'s tables after its export", tables_built, WAIT_SECONDS, report)

    lines = expected_week_lines(SMALL_WEEK, LATEST_WEEK)
    assert object_lines_bytes(deployment.store, deployment.store.week_key(week)) == joined_lines(lines)
    assert deployment.run(export_run_id).status == DagsterRunStatus.SUCCESS, report()
    # Both tables in one run that nobody launched: a sensor of the code location did.
    [table_run_id] = table_run_ids
    assert table_run_id != export_run_id
    table_run = deployment.run(table_run_id)
    assert table_run.status == DagsterRunStatus.SUCCESS, report()
    assert table_run.tags.get(SENSOR_NAME_TAG), table_run.tags
    assert table_run.tags[PARTITION_NAME_TAG] == week
    for table in TABLES:
        found = deployment.materialization_metadata(table, week)
        assert found is not None
        _, metadata = found
        assert metadata["file_key"] == deployment.store.week_key(week)
        assert metadata["last_successful_line"] == len(lines) - 1
