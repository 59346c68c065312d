"""Load metrics in Dagster (CONTRACT §8): the recording of a load, and the metrics of real table
loads and migrations as the stack's Pushgateway holds them."""

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.request import urlopen

import pytest
from dagster import (
    DagsterInstance,
    Definitions,
    EnvVar,
    ExecuteInProcessResult,
    Failure,
    RunConfig,
    instance_for_test,
    materialize,
)
from prometheus_client import delete_from_gateway

from amplitude_pipeline.defs.metrics import recording
from amplitude_pipeline.defs.resources import MetricsPusher, build_resources
from amplitude_pipeline.defs.settings import Settings
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.defs.user_properties.jobs import (
    LoadS3EventFilesConfig,
    S3EventFile,
    load_s3_event_files,
    load_s3_event_files_op,
)
from amplitude_pipeline.load.event_files import FileLoadResult
from amplitude_pipeline.load.metrics import JOB, METRIC_HELP, s3_file_labels, tmp_table_labels
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import WEEK, failure_metadata, materializations, values
from amplitude_pipeline_tests.defs.tmp_user_properties.support import (
    five_rows,
    run_migration,
)
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import seed, tmp_row
from amplitude_pipeline_tests.support import REPO_ROOT, RecordingLog, closed_port, pipeline_resources

LABELS = {"source": "s3", "prefix": "p", "partition": WEEK}
METRIC_NAMES = set(METRIC_HELP)


# --- the recording of one load (no stack) ---


def test_a_failure_leaving_the_recording_carries_the_metrics_in_its_metadata():
    with pytest.raises(Failure) as raised, recording(MetricsPusher(), RecordingLog(), LABELS) as load:
        load.finish(FileLoadResult(file_key="k", etag="e", started_after=-1, records=5), ValueError())
        raise Failure("line 5: unknown key", metadata={"file_key": "k"})

    metadata = values(raised.value.metadata)
    assert metadata.pop("processing_duration_seconds") >= 0
    assert metadata == {
        "file_key": "k",
        "processed_records_total": 5,
        "errors_total": 1,
        "interrupted_count": 1,
    }


def test_any_other_exception_is_recorded_and_propagates_unchanged():
    error = ConnectionError("database gone")
    with (
        pytest.raises(ConnectionError) as raised,
        recording(MetricsPusher(), RecordingLog(), LABELS) as load,
    ):
        raise error

    assert raised.value is error
    assert load.metrics is not None
    assert (load.metrics.processed_records, load.metrics.errors, load.metrics.interrupted) == (
        0,
        1,
        1,
    )


def test_a_recording_pushes_once_however_often_it_is_finished():
    log = RecordingLog()
    pusher = MetricsPusher(pushgateway_url=f"http://127.0.0.1:{closed_port()}", timeout_seconds=2)
    result = FileLoadResult(file_key="k", etag="e", started_after=-1, records=3)

    with pytest.raises(Failure), recording(pusher, log, LABELS) as load:
        first = load.finish(result)
        raise Failure("after the load")

    assert values(first)["processed_records_total"] == 3
    assert len(log.warnings) == 1  # one push attempt: the failure after finish() changed nothing
    assert load.metrics is not None and load.metrics.interrupted == 0


def test_a_recording_without_its_result_is_a_programming_error():
    with pytest.raises(RuntimeError, match="finish"), recording(MetricsPusher(), RecordingLog(), LABELS):
        pass


def test_the_pushgateway_url_reaches_the_resource_through_its_env_var(monkeypatch):
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY_URL", "http://ops:secret@gateway:9091")
    assert build_resources(Settings.from_env())["metrics_pusher"].pushgateway_url == EnvVar(
        "PROMETHEUS_PUSHGATEWAY_URL"
    )

    monkeypatch.delenv("PROMETHEUS_PUSHGATEWAY_URL")
    assert build_resources(Settings.from_env())["metrics_pusher"].pushgateway_url is None


# --- real loads against the stack's Pushgateway ---


class Pushgateway:
    """The stack's Pushgateway: read a group back; the groups a test read are deleted after it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.groups: list[dict[str, str]] = []

    def pusher(self) -> MetricsPusher:
        return MetricsPusher(pushgateway_url=self.url)

    def group(self, labels: dict[str, str]) -> dict[str, float]:
        """The metrics of the group ``labels`` (empty when nothing was pushed to it)."""
        self.groups.append(labels)
        with urlopen(f"{self.url}/api/v1/metrics", timeout=5) as response:
            groups = json.load(response)["data"]
        wanted = {"job": JOB, **labels}
        found = [group for group in groups if group["labels"] == wanted]
        if not found:
            return {}
        [group] = found
        assert group["last_push_successful"] is True
        return {name: float(group[name]["metrics"][0]["value"]) for name in group if name in METRIC_NAMES}

    def delete_groups(self) -> None:
        for labels in self.groups:
            delete_from_gateway(self.url, job=JOB, grouping_key=labels, timeout=5)


@pytest.fixture
def pushgateway(stack: None) -> Iterator[Pushgateway]:
    url = os.environ.get("PROMETHEUS_PUSHGATEWAY_URL")
    if not url:
        message = "PROMETHEUS_PUSHGATEWAY_URL missing: run scripts/test.sh (the stack's Pushgateway)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    gateway = Pushgateway(url)
    yield gateway
    gateway.delete_groups()


def load_week(
    store: RawEventStore,
    dwh: DWHRepository,
    pusher: MetricsPusher,
    instance: DagsterInstance,
    start_after: int | None = None,
) -> ExecuteInProcessResult:
    config = {"start_after": start_after} if start_after is not None else {}
    return materialize(
        [user_properties_tables],
        partition_key=WEEK,
        resources=pipeline_resources(store=store, dwh=dwh, metrics_pusher=pusher),
        run_config={"ops": {"user_properties_tables": {"config": config}}},
        instance=instance,
        raise_on_error=False,
    )


def metrics_of(metadata: dict[str, Any]) -> dict[str, float]:
    return {name: value for name, value in metadata.items() if name in METRIC_NAMES}


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.mark.integration
def test_a_table_load_pushes_the_metrics_its_materializations_carry(
    raw_event_store, dwh, pushgateway, instance
):
    key = upload_events(
        raw_event_store,
        f"{WEEK}.jsonl.gz",
        [event(f"2024-01-08 {9 + i:02d}:00:00", ehr_id=f"E{i}") for i in range(8)],
    )
    labels = {"source": "s3", "prefix": raw_event_store.prefix, "partition": WEEK}
    assert s3_file_labels(key) == labels

    result = load_week(raw_event_store, dwh, pushgateway.pusher(), instance)

    assert result.success
    found = materializations(result)
    assert metrics_of(found[PERMANENT_TABLE]) == metrics_of(found[CHANGEABLE_TABLE])
    metrics = metrics_of(found[PERMANENT_TABLE])
    assert metrics.pop("processing_duration_seconds") > 0
    assert metrics == {"processed_records_total": 8, "errors_total": 0, "interrupted_count": 0}
    assert pushgateway.group(labels) == metrics_of(found[PERMANENT_TABLE])


@pytest.mark.integration
def test_a_failed_load_pushes_interrupted_count_and_a_resumed_one_replaces_it(
    raw_event_store, dwh, pushgateway, instance
):
    week = [event(f"2024-01-08 {9 + i:02d}:00:00", ehr_id=f"E{i}") for i in range(8)]
    week[5]["user_properties"]["mystery_key"] = "?"
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", week)
    labels = {"source": "s3", "prefix": raw_event_store.prefix, "partition": WEEK}

    failed = load_week(raw_event_store, dwh, pushgateway.pusher(), instance)

    assert not failed.success
    metadata = failure_metadata(failed)
    assert metadata["failed_line"] == 5
    metrics = metrics_of(metadata)
    assert metrics["processing_duration_seconds"] > 0
    assert (metrics["processed_records_total"], metrics["errors_total"], metrics["interrupted_count"]) == (
        5,
        1,
        1,
    )
    assert pushgateway.group(labels) == metrics

    resumed = load_week(raw_event_store, dwh, pushgateway.pusher(), instance, start_after=5)

    assert resumed.success
    pushed = pushgateway.group(labels)
    # The week's state: lines 0-4 of the first run and 6-7 of the second (5 was skipped).
    assert (pushed["processed_records_total"], pushed["errors_total"], pushed["interrupted_count"]) == (
        7,
        0,
        0,
    )


@pytest.mark.integration
def test_a_migration_pushes_its_metrics_and_a_failed_one_its_interruption(dwh, pushgateway, instance):
    labels = tmp_table_labels(dwh.db_schema)
    seed(dwh, five_rows())

    result = run_migration(dwh, instance, page_size=2, metrics_pusher=pushgateway.pusher())

    assert result.success
    found = materializations(result)
    assert set(found) == {PERMANENT_TABLE, CHANGEABLE_TABLE}
    metrics = metrics_of(found[PERMANENT_TABLE])
    assert (metrics["processed_records_total"], metrics["errors_total"], metrics["interrupted_count"]) == (
        5,
        0,
        0,
    )
    assert pushgateway.group(labels) == metrics

    rows = [tmp_row(100 + i, ehr_id=f"F{i}") for i in range(3)]
    rows[1]["user_properties"]["age"] = "unknown"
    seed(dwh, rows)

    failed = run_migration(dwh, instance, page_size=10, metrics_pusher=pushgateway.pusher())

    assert not failed.success
    metrics = metrics_of(failure_metadata(failed))
    assert (metrics["processed_records_total"], metrics["errors_total"], metrics["interrupted_count"]) == (
        1,
        1,
        1,
    )
    # The page committed before the bad row is reported with the same metrics.
    assert metrics_of(materializations(failed)[PERMANENT_TABLE]) == metrics
    assert pushgateway.group(labels) == metrics


@pytest.mark.integration
def test_a_dead_pushgateway_does_not_fail_the_load_and_is_logged_as_a_warning(raw_event_store, dwh, instance):
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", [event("2024-01-08 09:00:00", ehr_id="E1")])
    dead = f"http://127.0.0.1:{closed_port()}"

    result = load_week(raw_event_store, dwh, MetricsPusher(pushgateway_url=dead), instance)

    assert result.success
    assert metrics_of(materializations(result)[PERMANENT_TABLE])["processed_records_total"] == 1
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING and "Pushgateway" in entry.user_message
    ]
    assert len(warnings) == 1
    assert f"not pushed to the Pushgateway at {dead}" in warnings[0]


DAY = "2024-01-09"
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def hourly_file(store: RawEventStore, hour: int, *, bad_line: int | None = None, users: int = 4) -> str:
    """Amplitude's S3-export file of ``DAY``'s ``hour``: ``users`` events, one unknown key at ``bad_line``."""
    events = [
        event(f"{DAY} {hour:02d}:{minute:02d}:00", ehr_id=f"H{hour}-{minute}") for minute in range(users)
    ]
    if bad_line is not None:
        events[bad_line]["user_properties"]["mystery_key"] = "?"
    return upload_events(store, f"123_{DAY}_{hour}#0.json.gz", events)


def run_files(
    store: RawEventStore, dwh: DWHRepository, pusher: MetricsPusher, instance: DagsterInstance, *keys: str
) -> ExecuteInProcessResult:
    defs = Definitions(
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=store, dwh=dwh, metrics_pusher=pusher),
    )
    config = LoadS3EventFilesConfig(files=[S3EventFile(key=key) for key in keys])
    return defs.resolve_job_def(load_s3_event_files.name).execute_in_process(
        run_config=RunConfig(ops={load_s3_event_files_op.name: config}),
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.integration
def test_a_stuck_file_keeps_its_days_group_interrupted_until_it_loads(
    raw_event_store, dwh, pushgateway, instance
):
    labels = {"source": "s3", "prefix": raw_event_store.prefix, "partition": DAY}
    hour_1 = hourly_file(raw_event_store, 1, bad_line=2)
    assert not run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_1).success
    assert pushgateway.group(labels) | {"processing_duration_seconds": 0} == {
        "processed_records_total": 2,
        "errors_total": 1,
        "interrupted_count": 1,
        "processing_duration_seconds": 0,
    }

    # A good file of the same day loads: the day still holds the stuck hour 1.
    hour_2 = hourly_file(raw_event_store, 2)
    assert run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_2).success
    pushed = pushgateway.group(labels)
    assert (pushed["processed_records_total"], pushed["errors_total"], pushed["interrupted_count"]) == (
        6,
        1,
        1,
    )

    # Hour 1 replaced by a good file (new content loads from line 0): the day is whole.
    hour_1 = hourly_file(raw_event_store, 1)
    assert run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_1).success
    pushed = pushgateway.group(labels)
    assert (pushed["processed_records_total"], pushed["errors_total"], pushed["interrupted_count"]) == (
        8,
        0,
        0,
    )


@pytest.mark.integration
def test_the_shipped_alert_rule_fires_on_a_stuck_file_stays_firing_and_clears_after_the_fix(
    raw_event_store, dwh, pushgateway, instance, start_prometheus, tmp_path
):
    # The shipped rule, but for its `for:` (10 minutes, to ride out Dagster's retries): a test
    # cannot wait that long. Everything else (expression, grouping, labels) is the file's.
    rules = tmp_path / "alerts.yml"
    shipped = RULES.read_text(encoding="utf-8")
    assert shipped.count("for: 10m") == 2
    rules.write_text(shipped.replace("for: 10m", "for: 0s"), encoding="utf-8")
    prometheus = start_prometheus([rules])
    mine = {"prefix": raw_event_store.prefix, "partition": DAY}

    def stuck_alerts() -> list[dict[str, str]]:
        return [
            alert.labels for alert in prometheus.wait_until_firing("AmplitudePipelineLoadStuck", labels=mine)
        ]

    hour_1 = hourly_file(raw_event_store, 1, bad_line=0)
    run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_1)
    pushgateway.group({"source": "s3", **mine})
    assert [alert["severity"] for alert in stuck_alerts()] == ["page"]

    hour_2 = hourly_file(raw_event_store, 2)
    assert run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_2).success
    time.sleep(3)  # three scrapes and evaluations of the new push
    assert stuck_alerts(), "the alert cleared while hour 1 is still stuck"

    hour_1 = hourly_file(raw_event_store, 1)
    assert run_files(raw_event_store, dwh, pushgateway.pusher(), instance, hour_1).success
    prometheus.wait_until_absent("AmplitudePipelineLoadStuck", labels=mine)
