"""``s3_new_objects_sensor`` ticking over SeaweedFS with the cursor carried from tick to tick."""

import gzip
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import orjson
import pytest
from dagster import (
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    RunRequest,
    SensorDefinition,
    build_sensor_context,
    instance_for_test,
)
from dagster._core.test_utils import in_process_test_workspace
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster_graphql.test.utils import execute_dagster_graphql
from sqlalchemy import insert

from amplitude_pipeline.defs.user_properties.jobs import load_s3_event_files, load_s3_event_files_op
from amplitude_pipeline.defs.user_properties.sensors import (
    BYTES_TAG,
    FILE_COUNT_TAG,
    PREFIX_TAG,
    build_s3_new_objects_sensor,
)
from amplitude_pipeline.load.event_files import load_event_file
from amplitude_pipeline.load.s3_discovery import DiscoveryLimits, data_order_key
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import ListingPage, RawEventStore
from amplitude_pipeline_tests.defs.user_properties.support import (
    JOB_DWH_SCHEMA_VARIABLE,
    JOB_S3_PREFIX_VARIABLE,
    patients,
    permanent_ehr_ids,
)
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.support import pipeline_resources

pytestmark = pytest.mark.integration

LIMITS = DiscoveryLimits(page_size=100, max_pages_per_tick=4, max_files_per_tick=300, max_files_per_run=40)


class Ticker:
    """Evaluates the sensor as the daemon would, one tick after another: only the cursor string
    passes from one evaluation to the next."""

    def __init__(
        self,
        sensor: SensorDefinition,
        store: RawEventStore,
        dwh: DWHRepository,
        pages: list[int],
        instance: DagsterInstance,
        limits: DiscoveryLimits = LIMITS,
    ):
        self.sensor = sensor
        self.resources = {"raw_event_store": store, "dwh": dwh}
        self.pages = pages
        self.instance = instance
        self.limits = limits
        self.cursor: str | None = None
        self.skip_reason: str | None = None
        self.requested: list[tuple[str, str]] = []
        self.run_keys: list[str] = []

    def tick(self) -> list[RunRequest]:
        pages_before = self.pages[0]
        with build_sensor_context(
            cursor=self.cursor, resources=self.resources, instance=self.instance
        ) as context:
            result = self.sensor(context)
        assert self.pages[0] - pages_before <= self.limits.max_pages_per_tick
        self.cursor = result.cursor
        self.skip_reason = result.skip_reason.skip_message if result.skip_reason else None
        requests = list(result.run_requests or [])
        files_this_tick = 0
        for request in requests:
            files = files_of(request)
            assert 0 < len(files) <= self.limits.max_files_per_run
            assert [key for key, _ in files] == sorted((key for key, _ in files), key=data_order_key)
            assert request.tags[FILE_COUNT_TAG] == str(len(files))
            assert int(request.tags[BYTES_TAG]) > 0
            files_this_tick += len(files)
            self.requested += files
            self.run_keys.append(request.run_key)
        assert files_this_tick <= self.limits.max_files_per_tick
        prefixes = [request.tags[PREFIX_TAG] for request in requests]
        assert len(prefixes) == len(set(prefixes))  # one run per prefix
        assert (result.skip_reason is None) == bool(requests)
        return requests

    def position(self, prefix: str) -> str | None:
        return self.state(prefix)["after"]

    def state(self, prefix: str) -> dict[str, Any]:
        assert self.cursor is not None
        return orjson.loads(self.cursor)["prefixes"][prefix]

    def until_sweep_completes(self, prefix: str) -> None:
        for _ in range(100):
            self.tick()
            if self.state(prefix)["sweep_started"] is None:
                return
        raise AssertionError("the sweep never completed")


def files_of(request: RunRequest) -> list[tuple[str, str]]:
    config = request.run_config["ops"][load_s3_event_files_op.name]["config"]
    return [(file["key"], file["etag"]) for file in config["files"]]


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def pages(monkeypatch) -> list[int]:
    """How many listing pages (one ListObjectsV2 request each) have been read."""
    count = [0]
    list_pages = RawEventStore.list_pages

    def counted(self: RawEventStore, prefix: str, **kwargs: Any) -> Iterator[ListingPage]:
        for page in list_pages(self, prefix, **kwargs):
            count[0] += 1
            yield page

    monkeypatch.setattr(RawEventStore, "list_pages", counted)
    return count


def put(store: RawEventStore, keys: list[str], body: bytes = gzip.compress(b"{}\n")) -> dict[str, str]:
    """Objects with the given keys, written in parallel; their ETags."""
    client = store.client

    def put_one(key: str) -> tuple[str, str]:
        response = client.put_object(Bucket=store.bucket, Key=key, Body=body)
        return key, response["ETag"].strip('"')

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(put_one, keys))


def amplitude_export_keys(root: str, days: int) -> list[str]:
    """Amplitude's own S3-export layout: one file per hour, ``{project}/{project}_{day}_{H}#{n}.json.gz``."""
    first = date(2024, 1, 1)
    return [
        f"{root}187512/187512_{first + timedelta(days=day)}_{hour}#0.json.gz"
        for day in range(days)
        for hour in range(24)
    ]


@pytest.mark.slow
def test_ticks_over_2500_keys_request_each_content_once_with_bounded_work(
    raw_event_store, dwh, pages, instance
):
    root = f"{raw_event_store.prefix}/"
    event_keys = amplitude_export_keys(root, days=100) + [f"{root}weeks/{i:03d}.jsonl.gz" for i in range(100)]
    markers = [
        f"{root}_SUCCESS",
        f"{root}187512/",
        f"{root}weeks/",
        f"{root}weeks/manifest.csv",
        f"{root}a.json",
    ]
    etags = put(raw_event_store, event_keys)
    put(raw_event_store, markers, body=b"")
    assert len(etags) == 2500
    ticker = Ticker(build_s3_new_objects_sensor([root], LIMITS), raw_event_store, dwh, pages, instance)

    for _ in range(3):
        ticker.tick()
    position = ticker.position(root)
    assert position is not None
    # Three ticks of a backlog (no run finishes, nothing holds the prefix back): each requests one
    # run of files in data order, and the next goes on from the first file it did not take, a day
    # it took part of listed again whole.
    in_data_order = sorted(event_keys, key=data_order_key)
    assert [key for key, _ in ticker.requested] == in_data_order[: 3 * LIMITS.max_files_per_run]
    assert position == max(in_data_order[: 3 * LIMITS.max_files_per_run])  # the end of day 5

    # While the sweep is half-way: a late key that sorts before its position, one after it, a
    # replaced object it already requested, and more markers.
    late, after = f"{root}0-late/187512_2023-12-31_23#0.json.gz", f"{root}zz-new.jsonl.gz"
    assert late < position < after
    replaced = ticker.requested[0][0]
    changed = {
        **put(raw_event_store, [late, after]),
        **put(raw_event_store, [replaced], body=gzip.compress(b'{"replaced": true}\n')),
    }
    put(raw_event_store, [f"{root}0-late/_SUCCESS", f"{root}zz/", f"{root}zz/_SUCCESS"], body=b"")
    assert changed[replaced] != etags[replaced]

    ticker.until_sweep_completes(root)
    assert (late, changed[late]) not in ticker.requested  # behind the first sweep's position
    ticker.until_sweep_completes(root)
    for _ in range(3):
        assert ticker.tick() == []

    expected = {
        **{key: [etag] for key, etag in etags.items()},
        late: [changed[late]],
        after: [changed[after]],
    }
    expected[replaced] = [etags[replaced], changed[replaced]]
    assert Counter(ticker.requested) == Counter(
        (key, etag) for key, tags in expected.items() for etag in tags
    )
    assert len(ticker.run_keys) == len(set(ticker.run_keys))

    # Once the checkpoint table says the contents are loaded, the cursor forgets them, and a
    # reset cursor requests only what is not loaded.
    loaded = [key for key in event_keys if key != replaced]
    with dwh.engine.begin() as conn:
        conn.execute(
            insert(dwh.tables.checkpoints),
            [dict(file_key=key, etag=etags[key], last_successful_line=0, finished=True) for key in loaded],
        )
    assert ticker.tick() == []
    assert set(ticker.state(root)["requested"]) == {late, after, replaced}
    ticker.cursor = None
    ticker.requested = []
    ticker.until_sweep_completes(root)
    assert sorted(ticker.requested) == sorted(
        [(late, changed[late]), (after, changed[after]), (replaced, changed[replaced])]
    )


def test_the_runs_it_requests_load_the_files_and_are_not_requested_again(
    raw_event_store, dwh, pages, instance
):
    keys = [
        upload_events(raw_event_store, "2024-01-08.jsonl.gz", patients("2024-01-08", "E1", "E2")),
        upload_events(raw_event_store, "187512/187512_2024-01-15_3#0.json.gz", patients("2024-01-15", "E3")),
        upload_events(raw_event_store, "187512/187512_2024-01-15_3#1.json.gz", patients("2024-01-15", "E4")),
    ]
    sensor = build_s3_new_objects_sensor([raw_event_store.prefix], LIMITS)
    ticker = Ticker(sensor, raw_event_store, dwh, pages, instance)
    defs = Definitions(
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=raw_event_store, dwh=dwh),
    )

    (request,) = ticker.tick()
    run = defs.resolve_job_def(load_s3_event_files.name).execute_in_process(
        run_config=request.run_config, tags=request.tags
    )

    assert request.tags[PREFIX_TAG] == f"{raw_event_store.prefix}/"

    assert sorted(key for key, _ in files_of(request)) == sorted(keys)
    assert run.success
    assert run.dagster_run.tags[FILE_COUNT_TAG] == "3"
    assert len(run.get_asset_materialization_events()) == 6
    assert permanent_ehr_ids(dwh) == ["E1", "E2", "E3", "E4"]
    assert ticker.tick() == []
    assert ticker.state(f"{raw_event_store.prefix}/")["requested"] == {}
    ticker.cursor = None
    assert ticker.tick() == []


EXPORT_DAYS = ("2024-01-08", "2024-01-09")
HOURS_WITH_REPEATED_USERS = (1, 2, 10, 11)


def amplitude_hourly_export(store: RawEventStore) -> list[tuple[str, list[dict[str, Any]]]]:
    """Two days of Amplitude's hourly S3-export files, in time order: ``(key, events)``.

    Users R0–R7 come back in hours 1, 2, 10 and 11 (parts #0 and #1) of both days, each record
    with its own ``initial_utm_source`` and ``registration_date`` (permanent values that disagree)
    and some without them; users S0–S3 appear on the second day only, in hours 10 and 2. Every
    hour also has users of its own. Lines within a file are shuffled.
    """
    shuffle = random.Random(15).shuffle
    files = []
    for day_number, day in enumerate(EXPORT_DAYS):
        for hour in range(24):
            repeated = hour in HOURS_WITH_REPEATED_USERS
            for part in (0, 1) if repeated else (0,):
                minute = 30 * part
                events = [
                    event(f"{day} {hour:02d}:{minute + i:02d}:00", ehr_id=f"D{day_number}H{hour}P{part}U{i}")
                    for i in range(2)
                ]
                if repeated:
                    events += [
                        event(
                            f"{day} {hour:02d}:{minute + 2 + user:02d}:00",
                            ehr_id=f"R{user}",
                            initial_utm_source=None
                            if (user + hour + part) % 3 == 0
                            else f"{day} {hour}#{part}",
                            registration_date=f"2023-{hour:02d}-{10 + user:02d}" if user % 2 else None,
                            city=f"city of hour {hour}",
                        )
                        for user in range(8)
                        if (user + hour + part) % 4 != 1
                    ]
                if day_number == 1 and hour in (2, 10):
                    events += [
                        event(
                            f"{day} {hour:02d}:{minute + 20 + user:02d}:00",
                            ehr_id=f"S{user}",
                            initial_utm_source=f"{day} {hour}#{part}",
                        )
                        for user in range(4)
                    ]
                shuffle(events)
                key = upload_events(store, f"187512/187512_{day}_{hour}#{part}.json.gz", events)
                files.append((key, events))
    return files


@pytest.mark.parametrize(
    "limits",
    [
        LIMITS,
        # Several runs of a few files, and ticks that see one day and a half: groups are cut.
        DiscoveryLimits(page_size=10, max_pages_per_tick=4, max_files_per_tick=300, max_files_per_run=6),
    ],
    ids=["one-tick", "many-ticks"],
)
def test_hourly_export_files_load_in_the_order_of_their_data(
    raw_event_store, dwh, new_dwh, pages, instance, limits
):
    files = amplitude_hourly_export(raw_event_store)
    sensor = build_s3_new_objects_sensor([raw_event_store.prefix], limits)
    ticker = Ticker(sensor, raw_event_store, dwh, pages, instance, limits)
    job = Definitions(
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=raw_event_store, dwh=dwh),
    ).resolve_job_def(load_s3_event_files.name)

    runs = 0
    for _ in range(100):
        requests = ticker.tick()
        for request in requests:
            run = job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance)
            assert run.success
            runs += 1
        if not requests and all(loaded(dwh, key) for key, _ in files):
            break
    else:
        raise AssertionError("the sensor did not load every file")
    assert runs >= len(files) / limits.max_files_per_run
    assert [key for key, _ in ticker.requested] == [key for key, _ in files]  # in time order, each once

    one_by_one = new_dwh()
    for key, _ in files:
        load_event_file(one_by_one, raw_event_store, key)
    for table in ("permanent", "changeable"):
        assert rows(dwh, table) == rows(one_by_one, table), table
    earliest: dict[str, dict[str, Any]] = {}
    for _, events in files:
        for record in events:
            ehr_id = record["user_properties"]["ehr_id"]
            if ehr_id not in earliest or record["event_time"] < earliest[ehr_id]["event_time"]:
                earliest[ehr_id] = record
    permanent = rows(dwh, "permanent")
    assert len(permanent) == len(earliest)
    for row in permanent:
        first = earliest[row["ehr_id"]]
        assert (str(row["uuid"]), row["event_time"].strftime("%Y-%m-%d %H:%M:%S")) == (
            first["uuid"],
            first["event_time"],
        ), row["ehr_id"]


def loaded(dwh: DWHRepository, key: str) -> bool:
    checkpoint = dwh.get_checkpoint(key)
    return checkpoint is not None and checkpoint.finished


TEST_LOCATION_MODULE = "amplitude_pipeline_tests.defs.user_properties.support"

LAUNCH_RUN = """
mutation ($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
  }
}
"""

REEXECUTE_RUN = """
mutation ($reexecutionParams: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $reexecutionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status parentRunId tags { key value } } }
    ... on PythonError { message }
  }
}
"""


def test_a_failed_run_holds_its_prefix_back_until_a_reexecution_of_it_succeeds(
    raw_event_store, dwh, dwh_schema, pages, monkeypatch
):
    """The runs are launched and re-executed as the UI does it (GraphQL, from a workspace), so
    that the re-execution's tags are Dagster's own choice: it copies the parent's."""
    bad = patients("2024-01-08", "A2", "A3")
    bad[1]["user_properties"]["mystery_key"] = "?"
    failing = upload_events(raw_event_store, "a/2.jsonl.gz", bad)
    upload_events(raw_event_store, "a/1.jsonl.gz", patients("2024-01-08", "A1"))
    upload_events(raw_event_store, "a/3.jsonl.gz", patients("2024-01-08", "A4"))
    upload_events(raw_event_store, "b/1.jsonl.gz", patients("2024-01-08", "B1"))
    root = raw_event_store.prefix
    monkeypatch.setenv(JOB_S3_PREFIX_VARIABLE, root)
    monkeypatch.setenv(JOB_DWH_SCHEMA_VARIABLE, dwh_schema)
    sensor = build_s3_new_objects_sensor([f"{root}/a", f"{root}/b"], LIMITS)
    with (
        instance_for_test(synchronous_run_coordinator=True, synchronous_run_launcher=True) as instance,
        in_process_test_workspace(
            instance,
            LoadableTargetOrigin(module_name=TEST_LOCATION_MODULE, attribute="load_job_on_the_test_stack"),
        ) as workspace,
    ):
        ticker = Ticker(sensor, raw_event_store, dwh, pages, instance)
        (location,) = workspace.code_location_names
        (repository,) = workspace.get_code_location(location).get_repositories()

        def launch(request: RunRequest) -> DagsterRun:
            """As the daemon does: the request's config and tags, launched (here: run at once)."""
            params = {
                "selector": {
                    "repositoryLocationName": location,
                    "repositoryName": repository,
                    "pipelineName": load_s3_event_files.name,
                },
                "runConfigData": request.run_config,
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in request.tags.items()]},
            }
            result = execute_dagster_graphql(workspace, LAUNCH_RUN, {"executionParams": params})
            launched = result.data["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            return instance.get_run_by_id(launched["run"]["runId"])

        first_a, first_b = sorted(ticker.tick(), key=lambda request: request.tags[PREFIX_TAG])
        assert first_a.tags[PREFIX_TAG] == f"{root}/a/"
        failed = launch(first_a)
        assert failed.status == DagsterRunStatus.FAILURE
        assert launch(first_b).status == DagsterRunStatus.SUCCESS

        # Later files: prefix b goes on; prefix a waits for its failed run, saying what to do.
        later_a = upload_events(raw_event_store, "a/4.jsonl.gz", patients("2024-01-09", "A5"))
        upload_events(raw_event_store, "b/2.jsonl.gz", patients("2024-01-09", "B2"))
        (second_b,) = ticker.tick()
        assert second_b.tags[PREFIX_TAG] == f"{root}/b/"
        assert launch(second_b).status == DagsterRunStatus.SUCCESS
        for _ in range(2):
            assert ticker.tick() == []
            assert ticker.skip_reason is not None
            assert (
                f"{root}/a/ waits: run {failed.run_id} failed, and the later files of this prefix load only "
                f"after it; fix the cause, then re-execute run {failed.run_id}: loaded files are skipped, "
                "the failed file resumes after its checkpoint"
            ) in ticker.skip_reason

        # The cause fixed, the run re-executed from failure as the UI's button does it.
        upload_events(raw_event_store, "a/2.jsonl.gz", patients("2024-01-08", "A2", "A3"))
        params = {"parentRunId": failed.run_id, "strategy": "FROM_FAILURE"}
        result = execute_dagster_graphql(workspace, REEXECUTE_RUN, {"reexecutionParams": params})
        reexecuted = result.data["launchRunReexecution"]
        assert reexecuted["__typename"] == "LaunchRunSuccess", reexecuted
        reexecution = instance.get_run_by_id(reexecuted["run"]["runId"])
        assert (reexecution.parent_run_id, reexecution.status) == (failed.run_id, DagsterRunStatus.SUCCESS)
        assert reexecution.tags[PREFIX_TAG] == f"{root}/a/"
        assert loaded(dwh, failing)

        (third_a,) = ticker.tick()
        assert [key for key, _ in files_of(third_a)] == [later_a]
        assert launch(third_a).status == DagsterRunStatus.SUCCESS
    assert permanent_ehr_ids(dwh) == ["A1", "A2", "A3", "A4", "A5", "B1", "B2"]
