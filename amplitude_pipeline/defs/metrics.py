"""A run's load metrics (CONTRACT §8): recorded around one load, pushed by the ``metrics_pusher``
resource (``defs/resources.py``), and handed back as the materializations' metadata.

A load runs inside ``recording(...)`` (``s3_file_recording`` for an S3 file); ``finish(result)``
pushes its metrics and returns them as metadata. Whatever leaves the block early is recorded
too: a ``dagster.Failure`` gets the metrics added to its metadata, any other exception or a
termination is pushed as an interrupted load and propagates unchanged. The values themselves are
``amplitude_pipeline.load.metrics``'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

from dagster import Failure, MetadataValue

from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.load.event_files import FileLoadInProgressError, FileLoadResult
from amplitude_pipeline.load.metrics import LoadMetrics, load_metrics, s3_file_labels, s3_group_state
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.storage.dwh import CheckpointGroupState, DWHRepository


@contextmanager
def recording(
    pusher: MetricsPusher,
    log: Log,
    labels: Mapping[str, str],
    group_state: Callable[[], CheckpointGroupState] | None = None,
) -> Iterator[LoadRecording]:
    """Time the load inside the block and record how it ended (see the module's docstring).

    ``labels``: :func:`amplitude_pipeline.load.metrics.s3_file_labels` or ``tmp_table_labels``.
    ``group_state``: the checkpoints of the labels' group, read when the load ends (S3 files).
    """
    load = LoadRecording(pusher, log, labels, group_state)
    try:
        yield load
    except FileLoadInProgressError:
        raise  # not a load of this run's: the run that holds the file records its own
    except Failure as failure:
        failure.metadata = {**failure.metadata, **load.finish(None, failure)}
        raise
    except BaseException as error:
        load.finish(None, error)
        raise
    if load.metrics is None:
        raise RuntimeError("a load's recording ended without finish(result): its metrics are unknown")


def s3_file_recording(
    pusher: MetricsPusher, log: Log, dwh: DWHRepository, key: str
) -> AbstractContextManager[LoadRecording]:
    """The recording of one S3 file's load: its group's state is its checkpoints' (CONTRACT §8)."""
    labels = s3_file_labels(key)
    return recording(pusher, log, labels, group_state=lambda: s3_group_state(dwh, labels))


class LoadRecording:
    """One load's metrics, timed from the start of its ``recording`` block, pushed once."""

    def __init__(
        self,
        pusher: MetricsPusher,
        log: Log,
        labels: Mapping[str, str],
        group_state: Callable[[], CheckpointGroupState] | None = None,
    ) -> None:
        self._pusher = pusher
        self._log = log
        self._labels = labels
        self._group_state = group_state
        self._started = time.monotonic()
        self.metrics: LoadMetrics | None = None

    def finish(
        self, result: FileLoadResult | MigrationResult | None, stopped_by: BaseException | None = None
    ) -> dict[str, MetadataValue]:
        """Record the load's end: its result (a failed load's partial result) and what stopped it.

        The first call pushes; later calls return the same metrics. Returns them as metadata.
        """
        if self.metrics is None:
            duration = time.monotonic() - self._started
            self.metrics = load_metrics(self._labels, result, duration, stopped_by, self._read_group_state())
            values = ", ".join(f"{name}={value}" for name, value in self.metrics.values().items())
            self._log.info(f"load metrics: {values}")
            self._pusher.push(self.metrics, self._log)
        return {
            name: MetadataValue.float(value) if isinstance(value, float) else MetadataValue.int(value)
            for name, value in self.metrics.values().items()
        }

    def _read_group_state(self) -> CheckpointGroupState | None:
        """The group's checkpoints, or None (the run's own values) when they cannot be read: the
        DWH may be what stopped the load, and metrics never fail one."""
        if self._group_state is None:
            return None
        try:
            return self._group_state()
        except Exception as error:
            self._log.warning(
                f"load metrics: the group's checkpoints could not be read ({describe_error(error)})"
            )
            return None
