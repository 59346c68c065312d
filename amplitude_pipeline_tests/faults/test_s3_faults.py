"""S3 that throttles and drops connections mid-body (issue 9), through a fault-injecting proxy in
front of SeaweedFS: the export and the load, with the production S3 resource (botocore's standard
retries, ``ResumingBody``), end with exactly what a fault-free run makes, and the proxy's counters
show that the faults happened. An outage that outlasts every retry stops the load at a line, and
the rerun loads exactly the rest."""

import os
from dataclasses import replace
from typing import Any

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError, ResponseStreamingError
from dagster import materialize

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.resources import build_resources
from amplitude_pipeline.defs.settings import Settings
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.load.event_files import EventFileLoadError, load_event_file
from amplitude_pipeline.storage.s3 import RawEventStore, s3_client
from amplitude_pipeline_tests.defs.support import (
    WEEK,
    amplitude_resource,
    materializations,
    object_bytes,
    simulator,
)
from amplitude_pipeline_tests.faults.s3_proxy import FaultInjectingS3Proxy
from amplitude_pipeline_tests.faults.support import BATCH_SIZE, big_week_lines, table_rows, upload_big_week
from amplitude_simulator import SimulatorConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# ~1.7 MB compressed: the export's upload is one PutObject long enough to be cut.
EXPORT_WEEK = SimulatorConfig(users=300, events_per_day=700)


def production_resources(endpoint_url: str, prefix: str, dwh_schema: str = "public") -> dict[str, Any]:
    """The code location's own resources (``build_resources``) for the stack, with S3 at
    ``endpoint_url``; nothing pushed to a Pushgateway."""
    settings = replace(
        Settings.from_env(),
        s3_endpoint_url=endpoint_url,
        s3_prefix=prefix,
        dwh_schema=dwh_schema,
        push_metrics=False,
    )
    return build_resources(settings)


def test_the_proxy_answers_slowdown_and_cuts_bodies_as_configured(raw_event_store):
    key = f"{raw_event_store.prefix}/object.bin"
    body = os.urandom(300_000)
    raw_event_store.client.put_object(Bucket=raw_event_store.bucket, Key=key, Body=body)
    with FaultInjectingS3Proxy(
        os.environ["S3_ENDPOINT_URL"], slowdown_every=2, cut_every=1, cut_after_bytes=100_000
    ) as proxy:
        no_retries = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            region_name=os.environ.get("AWS_REGION"),
            config=botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        with pytest.raises(ClientError) as throttled:
            no_retries.get_object(Bucket=raw_event_store.bucket, Key=key)  # request 1: SlowDown
        response = no_retries.get_object(Bucket=raw_event_store.bucket, Key=key)  # 2: cut body
        with pytest.raises(ResponseStreamingError) as cut:
            response["Body"].read()
        counters = proxy.snapshot()

    assert throttled.value.response["Error"]["Code"] == "SlowDown"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "IncompleteRead(100000 bytes read, 200000 more expected)" in str(cut.value)
    assert (counters.requests, counters.slowdowns, counters.cut_downloads) == (2, 1, 1)


def test_an_export_through_throttling_and_cut_uploads_stores_exactly_the_fault_free_object(raw_event_store):
    faulty_prefix = f"{raw_event_store.prefix}-through-faults"
    with simulator(EXPORT_WEEK) as sim:
        clean = materialize(
            [amplitude_events],
            partition_key=WEEK,
            resources={"amplitude": amplitude_resource(sim), "raw_event_store": raw_event_store},
        )
        with FaultInjectingS3Proxy(
            os.environ["S3_ENDPOINT_URL"], slowdown_every=2, cut_every=1, cut_after_bytes=256 * 1024
        ) as proxy:
            resources = production_resources(proxy.endpoint_url, faulty_prefix)
            faulty = materialize(
                [amplitude_events],
                partition_key=WEEK,
                resources={
                    "amplitude": amplitude_resource(sim),
                    "raw_event_store": resources["raw_event_store"],
                },
            )
            counters = proxy.snapshot()

    assert clean.success and faulty.success
    assert counters.slowdowns >= 1
    assert counters.cut_uploads >= 1
    assert counters.methods.get("PUT", 0) >= 3  # the first answered SlowDown, the next one cut
    clean_key, faulty_key = raw_event_store.week_key(WEEK), f"{faulty_prefix}/{WEEK}.jsonl.gz"
    stored = object_bytes(raw_event_store, faulty_key)
    assert len(stored) > 256 * 1024
    assert stored == object_bytes(raw_event_store, clean_key)
    metadata = materializations(faulty)["amplitude_events"]
    assert metadata["bytes"] == len(stored)
    assert metadata["etag"] == raw_event_store.stat(faulty_key).etag


def test_a_load_through_throttling_and_cut_downloads_equals_a_fault_free_load(raw_event_store, new_dwh):
    key = upload_big_week(raw_event_store)
    faulty, clean = new_dwh(), new_dwh()
    with FaultInjectingS3Proxy(
        os.environ["S3_ENDPOINT_URL"], slowdown_every=3, cut_every=1, cut_after_bytes=1536 * 1024
    ) as proxy:
        resources = production_resources(proxy.endpoint_url, raw_event_store.prefix, faulty.db_schema)
        result = materialize(
            [user_properties_tables],
            partition_key=WEEK,
            resources={name: resources[name] for name in ("raw_event_store", "dwh", "metrics_pusher")},
        )
        counters = proxy.snapshot()

    assert result.success
    assert counters.slowdowns >= 1
    assert counters.cut_downloads >= 2  # a multi-MB object, cut every 1.5 MiB
    metadata = materializations(result)["permanent_user_properties"]
    assert (metadata["records_read"], metadata["last_successful_line"]) == (
        len(big_week_lines()),
        len(big_week_lines()) - 1,
    )
    load_event_file(clean, raw_event_store, key)
    expected = table_rows(clean)
    assert len(expected["permanent"]) > 0
    assert table_rows(faulty) == expected


def test_the_object_the_load_read_through_faults_was_whole(raw_event_store):
    """The reader below the loader: every line of the object, in order, once, despite the cuts."""
    key = upload_big_week(raw_event_store)
    with FaultInjectingS3Proxy(
        os.environ["S3_ENDPOINT_URL"], slowdown_every=2, cut_every=1, cut_after_bytes=2 * 1024 * 1024
    ) as proxy:
        # The production client (botocore's standard retries, DEFAULT_RETRY.attempts in all).
        store = RawEventStore(
            raw_event_store.bucket,
            raw_event_store.prefix,
            s3_client(proxy.endpoint_url, os.environ.get("AWS_REGION")),
        )
        with store.open_lines(key) as (stored, lines):
            read = list(lines)
        counters = proxy.snapshot()

    assert counters.cut_downloads >= 2
    assert stored.etag == raw_event_store.stat(key).etag
    assert read == list(big_week_lines())


def test_an_s3_outage_mid_load_stops_the_load_at_a_line_and_the_rerun_completes_it(raw_event_store, new_dwh):
    """S3 goes away in the middle of the object for longer than every retry: the load must stop
    with its position (never finish as if the file had ended), keep what it committed, and a
    rerun once S3 is back must load exactly the rest."""
    key = upload_big_week(raw_event_store)
    lines = len(big_week_lines())
    interrupted, clean = new_dwh(), new_dwh()
    with FaultInjectingS3Proxy(os.environ["S3_ENDPOINT_URL"], outage_after_bytes=2 * 1024 * 1024) as proxy:
        # botocore's retries cannot outlast an outage that never ends: one retry keeps the test short.
        client = s3_client(proxy.endpoint_url, os.environ.get("AWS_REGION"), attempts=2)
        through_outage = RawEventStore(raw_event_store.bucket, raw_event_store.prefix, client)
        with pytest.raises(EventFileLoadError) as stopped:
            load_event_file(interrupted, through_outage, key, batch_size=BATCH_SIZE)
        counters = proxy.snapshot()

    assert (counters.cut_downloads, counters.outage_refusals) == (1, 2)  # the cut, the Range GET twice
    checkpoint = interrupted.get_checkpoint(key)
    assert checkpoint is not None and not checkpoint.finished
    assert 0 < checkpoint.last_successful_line < lines - 1
    assert stopped.value.metadata == {
        "file_key": key,
        "failed_line": checkpoint.last_successful_line + 1,
        "last_successful_line": checkpoint.last_successful_line,
        "error_message": stopped.value.error_message,
    }
    assert "could not read the object" in stopped.value.error_message
    assert "SlowDown" in stopped.value.error_message

    resumed = load_event_file(interrupted, raw_event_store, key, batch_size=BATCH_SIZE)
    assert resumed.started_after == checkpoint.last_successful_line
    assert resumed.records == lines - 1 - checkpoint.last_successful_line
    load_event_file(clean, raw_event_store, key, batch_size=BATCH_SIZE)
    assert table_rows(interrupted) == table_rows(clean)
