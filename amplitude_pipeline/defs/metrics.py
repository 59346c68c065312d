"""Load metrics in Dagster (CONTRACT §8): the Pushgateway resource and the recording of one load.

A load runs inside ``metrics_pusher.recording(...)``; ``finish(result)`` pushes its metrics and
returns them as metadata for the materializations. Whatever leaves the block early is recorded
too: a ``dagster.Failure`` gets the metrics added to its metadata, any other exception or a
termination is pushed as an interrupted load and propagates unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from dagster import ConfigurableResource, Failure, MetadataValue
from pydantic import Field

from amplitude_pipeline.load.event_files import FileLoadInProgressError, FileLoadResult
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline.log import Log
from amplitude_pipeline.metrics import (
    DEFAULT_PUSH_TIMEOUT_SECONDS,
    LoadMetrics,
    load_metrics,
    push_load_metrics,
)


class MetricsPusher(ConfigurableResource):
    """Pushes load metrics to a Prometheus Pushgateway; without a URL it pushes nothing."""

    pushgateway_url: str | None = Field(
        default=None, description="PROMETHEUS_PUSHGATEWAY_URL, e.g. http://host:9091; unset: no push."
    )
    timeout_seconds: float = Field(
        default=DEFAULT_PUSH_TIMEOUT_SECONDS, gt=0, description="Per push; a slow gateway only delays a run."
    )

    def push(self, metrics: LoadMetrics, log: Log) -> bool:
        """True when the Pushgateway accepted them; a failure is logged, never raised."""
        if not self.pushgateway_url:
            return False
        return push_load_metrics(metrics, self.pushgateway_url, log, timeout_seconds=self.timeout_seconds)

    @contextmanager
    def recording(self, log: Log, labels: Mapping[str, str]) -> Iterator[LoadRecording]:
        """Time the load inside the block and record how it ended (see the module's docstring).

        ``labels``: :func:`amplitude_pipeline.metrics.s3_file_labels` or ``tmp_table_labels``.
        """
        recording = LoadRecording(self, log, labels)
        try:
            yield recording
        except FileLoadInProgressError:
            raise  # not a load of this run's: the run that holds the file records its own
        except Failure as failure:
            failure.metadata = {**failure.metadata, **recording.finish(None, failure)}
            raise
        except BaseException as error:
            recording.finish(None, error)
            raise
        if recording.metrics is None:
            raise RuntimeError("a load's recording ended without finish(result): its metrics are unknown")


class LoadRecording:
    """One load's metrics, timed from the start of its ``recording`` block, pushed once."""

    def __init__(self, pusher: MetricsPusher, log: Log, labels: Mapping[str, str]) -> None:
        self._pusher = pusher
        self._log = log
        self._labels = labels
        self._started = time.monotonic()
        self.metrics: LoadMetrics | None = None

    def finish(
        self, result: FileLoadResult | MigrationResult | None, stopped_by: BaseException | None = None
    ) -> dict[str, MetadataValue]:
        """Record the load's end: its result (a failed load's partial result) and what stopped it.

        The first call pushes; later calls return the same metrics. Returns them as metadata.
        """
        if self.metrics is None:
            self.metrics = load_metrics(self._labels, result, time.monotonic() - self._started, stopped_by)
            values = ", ".join(f"{name}={value}" for name, value in self.metrics.values().items())
            self._log.info(f"load metrics: {values}")
            self._pusher.push(self.metrics, self._log)
        return {
            name: MetadataValue.float(value) if isinstance(value, float) else MetadataValue.int(value)
            for name, value in self.metrics.values().items()
        }
