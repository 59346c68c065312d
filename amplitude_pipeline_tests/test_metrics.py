"""Load metrics and their push (CONTRACT §8), without the stack: a local HTTP server stands in
for the Pushgateway where a request has to be seen."""

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.request import urlopen

import pytest
from prometheus_client import delete_from_gateway, generate_latest

from amplitude_pipeline.load.event_files import FileLoadResult
from amplitude_pipeline.load.metrics import (
    JOB,
    LoadMetrics,
    load_metrics,
    metrics_registry,
    push_load_metrics,
    s3_file_labels,
    settled_groups_to_delete,
    tmp_table_labels,
)
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline_tests.support import RecordingLog, closed_port

WEEK_LABELS = {"source": "s3", "prefix": "amplitude/events", "partition": "2024-01-08"}


@dataclass
class SeenRequest:
    method: str
    path: str
    authorization: str | None
    body: bytes


@dataclass
class FakeGateway:
    url: str
    requests: list[SeenRequest]
    status: list[int]  # the status every request gets; a list so that a test can change it


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    seen: list[SeenRequest] = []
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(SeenRequest("PUT", self.path, self.headers.get("Authorization"), body))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            """The list of groups a push reads to delete old settled ones: none here."""
            seen.append(SeenRequest("GET", self.path, self.headers.get("Authorization"), b""))
            body = b'{"status":"success","data":[]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeGateway(f"http://127.0.0.1:{server.server_address[1]}", seen, status)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def week_metrics(**overrides: object) -> LoadMetrics:
    settings: dict = {
        "labels": WEEK_LABELS,
        "processed_records": 700,
        "errors": 0,
        "duration_seconds": 1.5,
        "interrupted": 0,
        **overrides,
    }
    return LoadMetrics(**settings)


@pytest.mark.parametrize(
    ("key", "labels"),
    [
        ("amplitude/events/2024-01-08.jsonl.gz", {"prefix": "amplitude/events", "partition": "2024-01-08"}),
        ("ranges/q1/2024-01-03.jsonl.gz", {"prefix": "ranges/q1", "partition": "2024-01-03"}),
        ("exports/123/123_2024-02-05_7#0.json.gz", {"prefix": "exports/123", "partition": "2024-02-05"}),
        ("dropbox/users.json.gz", {"prefix": "dropbox", "partition": ""}),
        ("2024-01-08.jsonl.gz", {"prefix": "", "partition": "2024-01-08"}),
    ],
)
def test_an_s3_file_is_labelled_by_its_directory_and_the_date_in_its_name(key, labels):
    assert s3_file_labels(key) == {"source": "s3", **labels}


def test_a_migration_is_labelled_by_the_schema_of_its_tmp_table():
    assert tmp_table_labels("analytics") == {"source": "tmp_table", "schema": "analytics"}


def test_a_complete_load_counts_its_records_and_no_error():
    result = FileLoadResult(file_key="k", etag="e", started_after=-1, records=700, blank_lines=3)

    metrics = load_metrics(WEEK_LABELS, result, 1.23456)

    assert metrics.values() == {
        "processed_records_total": 700,
        "errors_total": 0,
        "processing_duration_seconds": 1.235,
        "interrupted_count": 0,
    }
    assert metrics.labels == WEEK_LABELS


def test_a_load_stopped_by_an_error_counts_the_records_committed_before_it():
    partial = FileLoadResult(file_key="k", etag="e", started_after=-1, records=5)

    metrics = load_metrics(WEEK_LABELS, partial, 0.5, ValueError("unknown key"))

    assert (metrics.processed_records, metrics.errors, metrics.interrupted) == (5, 1, 1)


def test_a_terminated_load_is_interrupted_without_an_error():
    metrics = load_metrics(WEEK_LABELS, None, 0.5, KeyboardInterrupt())

    assert (metrics.processed_records, metrics.errors, metrics.interrupted) == (0, 0, 1)


def test_a_migration_counts_its_migrated_rows():
    result = MigrationResult(pages=3, rows_migrated=12_001)

    metrics = load_metrics(tmp_table_labels("public"), result, 2.0)

    assert metrics.processed_records == 12_001


def test_the_registry_exposes_the_four_gauges_with_the_contract_names():
    exposition = generate_latest(metrics_registry(week_metrics(errors=1, interrupted=1))).decode()

    for name, value in (
        ("processed_records_total", "700.0"),
        ("errors_total", "1.0"),
        ("processing_duration_seconds", "1.5"),
        ("interrupted_count", "1.0"),
    ):
        assert f"# TYPE {name} gauge\n" in exposition
        assert f"\n{name} {value}\n" in exposition


def test_a_push_puts_the_group_of_job_source_prefix_and_partition(gateway):
    log = RecordingLog()

    assert push_load_metrics(week_metrics(), gateway.url, log) is True

    # The push, then the read of the groups whose old settled ones it deletes (none here).
    request, listing = gateway.requests
    assert (listing.method, listing.path) == ("GET", "/api/v1/metrics")
    assert request.method == "PUT"  # replaces the group's previous run whole
    prefix = base64.urlsafe_b64encode(b"amplitude/events").decode()
    assert request.path == (
        f"/metrics/job/amplitude_pipeline/partition/2024-01-08/prefix@base64/{prefix}/source/s3"
    )
    assert b"processed_records_total 700.0" in request.body
    assert request.authorization is None
    assert log.warnings == []
    assert len(log.infos) == 1


def test_credentials_in_the_url_go_into_basic_auth_and_never_into_a_message(gateway):
    log = RecordingLog()
    with_credentials = gateway.url.replace("http://", "http://ops:p%40ss-w0rd@")

    assert push_load_metrics(week_metrics(), with_credentials, log) is True
    gateway.status[0] = 500
    assert push_load_metrics(week_metrics(), with_credentials, log) is False

    authorizations = {request.authorization for request in gateway.requests}
    assert authorizations == {"Basic " + base64.b64encode(b"ops:p@ss-w0rd").decode()}
    [warning] = log.warnings
    assert gateway.url in warning
    for message in (*log.infos, *log.warnings):
        assert "p%40ss-w0rd" not in message
        assert "p@ss-w0rd" not in message


def test_a_dead_pushgateway_is_a_warning_not_an_exception():
    log = RecordingLog()
    url = f"http://127.0.0.1:{closed_port()}"

    assert push_load_metrics(week_metrics(), url, log, timeout_seconds=2) is False

    [warning] = log.warnings
    assert f"not pushed to the Pushgateway at {url}" in warning
    assert "refused" in warning.lower()
    assert log.infos == []


def test_an_unparseable_url_is_a_warning_that_does_not_repeat_it():
    log = RecordingLog()

    assert push_load_metrics(week_metrics(), "http://ops:secret@[::1", log) is False

    [warning] = log.warnings
    assert "secret" not in warning
    assert "the configured URL" in warning


def pushed_group(prefix: str, partition: str, interrupted: float, pushed_at: float) -> dict[str, Any]:
    """A group as the Pushgateway's /api/v1/metrics lists it."""
    labels = {"job": JOB, "source": "s3", "prefix": prefix, "partition": partition}

    def gauge(value: float) -> dict[str, Any]:
        return {"type": "GAUGE", "metrics": [{"labels": labels, "value": str(value)}]}

    return {"labels": labels, "interrupted_count": gauge(interrupted), "push_time_seconds": gauge(pushed_at)}


def test_only_settled_groups_of_the_prefix_pushed_before_the_cutoff_are_deleted():
    cutoff = datetime(2026, 11, 1, tzinfo=UTC)
    old, recent = cutoff.timestamp() - 1, cutoff.timestamp() + 1
    groups = [
        pushed_group("events", "2024-01-01", 0, old),  # settled and old: deleted
        pushed_group("events", "2024-01-08", 1, old),  # stuck: kept however old
        pushed_group("events", "2024-01-15", 0, recent),  # pushed recently: kept
        pushed_group("other", "2024-01-01", 0, old),  # another prefix: not this push's business
        {"labels": {"job": "someone_else", "source": "s3", "prefix": "events"}},
    ]

    just_pushed = {"source": "s3", "prefix": "events", "partition": "2024-01-22"}
    groups.append(pushed_group("events", "2024-01-22", 0, old))  # the group just pushed: never

    assert settled_groups_to_delete(groups, just_pushed, cutoff) == [
        {"source": "s3", "prefix": "events", "partition": "2024-01-01"}
    ]


@pytest.mark.integration
def test_a_push_deletes_the_prefixs_settled_groups_pushed_longer_ago_than_kept(stack):
    url = os.environ["PROMETHEUS_PUSHGATEWAY_URL"]
    prefix = f"test-{uuid.uuid4().hex[:8]}/events"
    log = RecordingLog()

    def labels(partition: str) -> dict[str, str]:
        return {"source": "s3", "prefix": prefix, "partition": partition}

    def push(partition: str, interrupted: int, now: datetime | None = None) -> None:
        metrics = week_metrics(labels=labels(partition), interrupted=interrupted)
        assert push_load_metrics(metrics, url, log, keep_settled_days=35, now=now) is True

    def partitions() -> set[str]:
        with urlopen(f"{url}/api/v1/metrics", timeout=5) as response:
            groups = json.load(response)["data"]
        return {group["labels"]["partition"] for group in groups if group["labels"].get("prefix") == prefix}

    try:
        push("2024-01-01", interrupted=0)
        push("2024-01-08", interrupted=1)
        assert partitions() == {"2024-01-01", "2024-01-08"}

        # Forty days later, another week of the prefix is pushed.
        push("2024-01-15", interrupted=0, now=datetime.now(UTC) + timedelta(days=40))

        assert partitions() == {"2024-01-08", "2024-01-15"}
        assert log.warnings == []
    finally:
        for partition in ("2024-01-01", "2024-01-08", "2024-01-15"):
            delete_from_gateway(url, job=JOB, grouping_key=labels(partition), timeout=5)
