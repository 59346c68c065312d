"""One load's metrics (CONTRACT §8) and their push to a Prometheus Pushgateway.

Every table load (an S3 file) and every migration of ``tmp_user_properties`` yields one
:class:`LoadMetrics`. They are pushed under job ``amplitude_pipeline`` and a grouping key of
``source`` plus the load's place: ``prefix`` (the file key's directory) and ``partition`` (the
date in its file name: the week of a weekly object) for S3, the DWH ``schema`` for the tmp
table. Runs of different files' partitions or prefixes therefore never overwrite each other;
the next run of the same group replaces its values (a PUT), and the Pushgateway stamps the
group with ``push_time_seconds``.

For S3 files the values are the group's *state*, read from the DWH's checkpoints after the load
(CONTRACT §8): ``processed_records_total`` counts the records committed from all of the group's
files (over every run), and ``interrupted_count`` stays 1 while any file of the group has an
unfinished checkpoint, whatever loads after it, and ``errors_total`` while one of those stopped
with an error; the load that pushes adds its own stop, if any. For the tmp table, whose source has
no checkpoints, they are the values of the group's last run. ``processing_duration_seconds`` is
always the last load's. All four are gauges: a Pushgateway keeps a group's last push and never
adds pushes up; the ``_total`` names are the contract's. Per-date groups keep the number of
series bounded (four per prefix and date: about 52 a year for weekly files, 365 a year for a
prefix of daily or hourly files) rather than one group per file.

Pushing is best effort: no URL means no push, and any failure is logged as a warning, never
raised, so that metrics cannot fail a load.
"""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import Request, urlopen

import orjson

from amplitude_pipeline.load.event_files import FileLoadResult
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.dwh import CheckpointGroupState, DWHRepository
from amplitude_pipeline.text import redact, shorten

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

JOB: Final = "amplitude_pipeline"
SOURCE_S3: Final = "s3"
SOURCE_TMP_TABLE: Final = "tmp_table"
DEFAULT_PUSH_TIMEOUT_SECONDS: Final = 5.0
# Settled groups (nothing stuck) older than this many days are deleted from the Pushgateway.
DEFAULT_KEEP_SETTLED_DAYS: Final = 35

# Name -> help text. The help is the same for every group: the Pushgateway wants one per name.
METRIC_HELP: Final = {
    "processed_records_total": "Records committed from this group's files over all runs (S3), or by "
    "its last run (tmp_user_properties rows).",
    "errors_total": "1 while a load of this group is stopped by an error (a file's unfinished checkpoint, "
    "or the last run), else 0.",
    "processing_duration_seconds": "Wall-clock seconds the last load of this group took.",
    "interrupted_count": "1 while a load of this group has not reached the end of its input: a file "
    "whose checkpoint is unfinished (stuck, or loading right now), or a last run that stopped; else 0.",
}

_DATE_IN_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, kw_only=True)
class LoadMetrics:
    labels: Mapping[str, str]
    """The grouping key: ``source`` and the load's place (see :func:`s3_file_labels`)."""
    processed_records: int
    errors: int
    duration_seconds: float
    interrupted: int

    def values(self) -> dict[str, int | float]:
        """The metrics by their contract names (also the Dagster metadata keys)."""
        return {
            "processed_records_total": self.processed_records,
            "errors_total": self.errors,
            "processing_duration_seconds": self.duration_seconds,
            "interrupted_count": self.interrupted,
        }


def s3_file_labels(key: str) -> dict[str, str]:
    """``source``, ``prefix`` (the key's directory) and ``partition`` (the first ``YYYY-MM-DD`` in
    the file name, "" when there is none) of an S3 file's load.

    ``amplitude/events/2024-01-08.jsonl.gz`` is ``prefix=amplitude/events, partition=2024-01-08``;
    an Amplitude S3-export file ``exports/123/123_2024-01-08_5#0.json.gz`` groups by its day.
    """
    directory, name = posixpath.split(key)
    date = _DATE_IN_NAME.search(name)
    return {"source": SOURCE_S3, "prefix": directory, "partition": date.group() if date else ""}


def tmp_table_labels(schema: str) -> dict[str, str]:
    """``source`` and the DWH ``schema`` whose ``tmp_user_properties`` was migrated."""
    return {"source": SOURCE_TMP_TABLE, "schema": schema}


def processed_records(result: FileLoadResult | MigrationResult | None) -> int:
    """Records a load committed: a file's event lines, the tmp table's migrated rows."""
    if result is None:
        return 0
    if isinstance(result, FileLoadResult):
        return result.records
    return result.rows_migrated


def load_metrics(
    labels: Mapping[str, str],
    result: FileLoadResult | MigrationResult | None,
    duration_seconds: float,
    stopped_by: BaseException | None = None,
    group: CheckpointGroupState | None = None,
) -> LoadMetrics:
    """The metrics of a load that ended with ``result`` (its partial result when it failed; None
    when it failed before loading anything), stopped by ``stopped_by`` or complete, in a group
    whose files' checkpoints are ``group`` (None: a source without checkpoints, or unreadable).

    An ``Exception`` is an error; any other ``BaseException`` (a run termination, Ctrl-C)
    interrupts the load without being one.
    """
    errored = isinstance(stopped_by, Exception)
    if group is None:
        return LoadMetrics(
            labels=dict(labels),
            processed_records=processed_records(result),
            errors=int(errored),
            duration_seconds=round(duration_seconds, 3),
            interrupted=int(stopped_by is not None),
        )
    return LoadMetrics(
        labels=dict(labels),
        processed_records=group.records_loaded,
        errors=int(errored or group.stopped_by_error > 0),
        duration_seconds=round(duration_seconds, 3),
        interrupted=int(stopped_by is not None or group.unfinished > 0),
    )


def s3_group_state(dwh: DWHRepository, labels: Mapping[str, str]) -> CheckpointGroupState:
    """The checkpoints of every file that shares the S3 labels ``labels`` (its directory and date)."""
    return dwh.checkpoint_group_state(labels["prefix"], lambda key: s3_file_labels(key) == labels)


def metrics_registry(metrics: LoadMetrics) -> CollectorRegistry:
    """A registry holding just this load's gauges (the grouping key labels them on push)."""
    from prometheus_client import CollectorRegistry, Gauge  # only a run that pushes needs it

    registry = CollectorRegistry()
    for name, value in metrics.values().items():
        Gauge(name, METRIC_HELP[name], registry=registry).set(value)
    return registry


def push_load_metrics(
    metrics: LoadMetrics,
    gateway_url: str,
    log: Log,
    *,
    timeout_seconds: float = DEFAULT_PUSH_TIMEOUT_SECONDS,
    keep_settled_days: int = DEFAULT_KEEP_SETTLED_DAYS,
    now: datetime | None = None,
) -> bool:
    """Push ``metrics`` to the Pushgateway at ``gateway_url``; True when it accepted them.

    Then delete the groups of the same S3 prefix last pushed more than ``keep_settled_days``
    before ``now`` that hold nothing stuck (``interrupted_count`` 0): Prometheus keeps their
    history, and the Pushgateway holds per prefix the groups pushed in those days plus the stuck
    ones (:func:`settled_groups_to_delete`).

    Credentials in the URL (``http://user:password@host:9091``) go into a Basic-Auth header and
    never into a message. Any failure is logged as a warning and swallowed.
    """
    from prometheus_client import delete_from_gateway, push_to_gateway

    place = ", ".join(f"{name}={value!r}" for name, value in metrics.labels.items())
    address = "the configured URL"  # until the URL is parsed: it may hold a password
    secrets: list[str] = []
    try:
        address, handler, secrets = _gateway(gateway_url)
        push_to_gateway(
            address,
            job=JOB,
            registry=metrics_registry(metrics),
            grouping_key=dict(metrics.labels),
            timeout=timeout_seconds,
            handler=handler,
        )
    except Exception as error:  # a push failure must never fail the load
        message = redact(f"{type(error).__name__}: {error}", secrets)
        log.warning(f"load metrics ({place}) not pushed to the Pushgateway at {address}: {shorten(message)}")
        return False
    log.info(f"load metrics ({place}) pushed to the Pushgateway at {address}")
    if metrics.labels.get("source") == SOURCE_S3:
        try:
            groups = _pushed_groups(address, gateway_url, timeout_seconds)
            cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_settled_days)
            for grouping_key in settled_groups_to_delete(groups, metrics.labels, cutoff):
                delete_from_gateway(
                    address, job=JOB, grouping_key=grouping_key, timeout=timeout_seconds, handler=handler
                )
        except Exception as error:
            message = redact(f"{type(error).__name__}: {error}", secrets)
            log.warning(
                f"old settled metric groups of {metrics.labels['prefix']!r} not deleted: {shorten(message)}"
            )
    return True


def settled_groups_to_delete(
    groups: Iterable[Mapping[str, Any]], pushed: Mapping[str, str], cutoff: datetime
) -> list[dict[str, str]]:
    """The grouping keys, among the Pushgateway's ``groups`` (its ``/api/v1/metrics`` data), of
    this job's other S3 groups of the ``pushed`` group's prefix, last pushed before ``cutoff``,
    with ``interrupted_count`` 0."""
    doomed = []
    for group in groups:
        labels = group.get("labels", {})
        if labels.get("job") != JOB or labels.get("source") != SOURCE_S3:
            continue
        if labels.get("prefix") != pushed["prefix"] or labels.get("partition") == pushed.get("partition"):
            continue
        if _gauge(group, "push_time_seconds") >= cutoff.timestamp():
            continue
        if _gauge(group, "interrupted_count") == 0:
            doomed.append({name: value for name, value in labels.items() if name != "job"})
    return doomed


def _gauge(group: Mapping[str, Any], name: str) -> float:
    """A group's value of gauge ``name``; NaN (never equal, never less) when it has none."""
    samples = group.get(name, {}).get("metrics", [])
    return max((float(sample["value"]) for sample in samples), default=float("nan"))


def _pushed_groups(address: str, gateway_url: str, timeout_seconds: float) -> list[Mapping[str, Any]]:
    parts = urlsplit(gateway_url if "://" in gateway_url else f"http://{gateway_url}")
    request = Request(f"{address.rstrip('/')}/api/v1/metrics")
    if parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    with urlopen(request, timeout=timeout_seconds) as response:
        return list(orjson.loads(response.read()).get("data", []))


_Handler = Callable[..., Callable[[], None]]


def _gateway(url: str) -> tuple[str, _Handler, list[str]]:
    """The URL without its credentials, the handler that sends them, and the secrets to redact."""
    from prometheus_client.exposition import basic_auth_handler, default_handler

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.password is None:
        return url, default_handler, []
    username, password = unquote(parts.username or ""), unquote(parts.password)
    netloc = parts.netloc.rpartition("@")[2]
    address = urlunsplit(parts._replace(netloc=netloc))

    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return address, handler, [password, parts.password]
