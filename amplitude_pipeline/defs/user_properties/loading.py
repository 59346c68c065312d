"""One S3 file into both tables, as a Dagster step does it: the one load path of the weekly table
assets and of ``load_s3_event_files`` (the S3 sensor's job).

The load itself is ``amplitude_pipeline.load.event_files.load_event_file``; this adds what a run
needs around it: the tables' schema, the load's metrics (pushed, and returned as metadata), a stop
turned into the run's failure or a step retry (``defs/failures.py``), and the materializations'
metadata of both tables.
"""

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import ClientError
from dagster import AssetExecutionContext, Config, Failure, OpExecutionContext
from pydantic import Field

from amplitude_pipeline.defs.failures import stopped_load
from amplitude_pipeline.defs.metadata import file_load_metadata, tables_metadata
from amplitude_pipeline.defs.metrics import s3_file_recording
from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.load.event_files import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCK_WAIT_SECONDS,
    EventFileLoadError,
    load_event_file,
)
from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore, is_missing_object_error

START_AFTER_DESCRIPTION = (
    "0-based line after which to start (processing starts at line N+1; -1 = the whole file). "
    "Unset: resume after the stored checkpoint."
)


class FileLoadConfig(Config):
    """Run config shared by every load of S3 files into the tables."""

    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE, gt=0, description="Lines per transaction (and checkpoint)."
    )


def prepare_tables(dwh: DWHRepository, log: Log) -> None:
    """Create the tables if missing, add the mapped columns they lack (CONTRACT §5), say which."""
    added = dwh.ensure_schema()
    if added:
        log.info(f"added mapped columns: {', '.join(added)}")


def load_file_into_tables(
    context: AssetExecutionContext | OpExecutionContext,
    dwh: DWHRepository,
    store: RawEventStore,
    metrics_pusher: MetricsPusher,
    key: str,
    *,
    start_after: int | None,
    batch_size: int,
    if_missing: str | None,
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS,
) -> dict[str, dict[str, Any]] | None:
    """Load ``key`` into both tables; the metadata of each table's materialization, by table.

    An object that does not exist fails the step, saying what to do (``if_missing``: a weekly
    partition's object must exist), or, when ``if_missing`` is None, is skipped with a warning
    (None). A load that stopped raises the step's failure or retry; another run loading the same
    file raises ``FileLoadInProgressError``, for the caller to decide.
    """
    with s3_file_recording(metrics_pusher, context.log, dwh, key) as recording:
        if if_missing is not None and store.stat(key) is None:
            raise Failure(
                description=f"{store.uri(key)} does not exist: {if_missing}", metadata={"file_key": key}
            )
        try:
            result = load_event_file(
                dwh,
                store,
                key,
                start_after=start_after,
                batch_size=batch_size,
                log=context.log,
                lock_wait_seconds=lock_wait_seconds,
            )
        except EventFileLoadError as error:
            recording.finish(error.result, error)
            raise stopped_load(context, error, {"records_loaded_this_run": error.result.records}) from error
        except ClientError as error:
            if not is_missing_object_error(error) or if_missing is not None:
                raise
            context.log.warning(f"{store.uri(key)} no longer exists; nothing to load")
            recording.finish(None)
            return None
        metrics: Mapping[str, Any] = recording.finish(result)
    return tables_metadata(dwh, result, {**file_load_metadata(result), **metrics})
