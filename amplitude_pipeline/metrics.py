"""One load's metrics (CONTRACT §8) and their push to a Prometheus Pushgateway.

Every table load (an S3 file) and every migration of ``tmp_user_properties`` yields one
:class:`LoadMetrics`. They are pushed under job ``amplitude_pipeline`` and a grouping key of
``source`` plus the load's place: ``prefix`` (the file key's directory) and ``partition`` (the
date in its file name: the week of a weekly object) for S3, the DWH ``schema`` for the tmp
table. Runs of different files' partitions or prefixes therefore never overwrite each other;
the next run of the same group replaces its values (a PUT), and the Pushgateway stamps the
group with ``push_time_seconds``.

All four are gauges holding the values of the group's last run. A Pushgateway never adds
pushes up, so a counter would restart with every run and ``rate()`` over it would be wrong;
the ``_total`` names are the contract's. Per-date groups keep the number of series bounded
(about 200 a year for weekly files) rather than one group per file.

Pushing is best effort: no URL means no push, and any failure is logged as a warning, never
raised, so that metrics cannot fail a load.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from amplitude_pipeline.load.event_files import FileLoadResult
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline.log import Log
from amplitude_pipeline.text import redact, shorten

JOB: Final = "amplitude_pipeline"
SOURCE_S3: Final = "s3"
SOURCE_TMP_TABLE: Final = "tmp_table"
DEFAULT_PUSH_TIMEOUT_SECONDS: Final = 5.0

# Name -> help text. The help is the same for every group: the Pushgateway wants one per name.
METRIC_HELP: Final = {
    "processed_records_total": "Records the last run of this group loaded and committed "
    "(event lines or tmp_user_properties rows).",
    "errors_total": "Errors that stopped the last run of this group (the loads stop at the first: 0 or 1).",
    "processing_duration_seconds": "Wall-clock seconds the last run of this group spent loading.",
    "interrupted_count": "1 when the last run of this group stopped before the end of its input "
    "(an error or a termination), else 0.",
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
) -> LoadMetrics:
    """The metrics of a load that ended with ``result`` (its partial result when it failed; None
    when it failed before loading anything), stopped by ``stopped_by`` or complete.

    An ``Exception`` is an error; any other ``BaseException`` (a run termination, Ctrl-C)
    interrupts the load without being one.
    """
    return LoadMetrics(
        labels=dict(labels),
        processed_records=processed_records(result),
        errors=int(isinstance(stopped_by, Exception)),
        duration_seconds=round(duration_seconds, 3),
        interrupted=int(stopped_by is not None),
    )


def metrics_registry(metrics: LoadMetrics) -> CollectorRegistry:
    """A registry holding just this load's gauges (the grouping key labels them on push)."""
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
) -> bool:
    """Push ``metrics`` to the Pushgateway at ``gateway_url``; True when it accepted them.

    Credentials in the URL (``http://user:password@host:9091``) go into a Basic-Auth header and
    never into a message. Any failure is logged as a warning and swallowed.
    """
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
    return True


_Handler = Callable[..., Callable[[], None]]


def _gateway(url: str) -> tuple[str, _Handler, list[str]]:
    """The URL without its credentials, the handler that sends them, and the secrets to redact."""
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
