"""``load_s3_event_files``: several Amplitude-format S3 files into the two tables, in one run.

``s3_new_objects_sensor`` starts it with the files it found; it can also be launched by hand
with a list of keys. Each file goes through the same loader as the weekly table assets (resume
by checkpoint, skip a file already loaded with the same ETag), and is reported as one
(unpartitioned) materialization of each table, with its ``file_key``.
"""

from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    Config,
    Failure,
    OpExecutionContext,
    ResourceParam,
    graph,
    op,
)
from pydantic import Field

from amplitude_pipeline.defs.resources import MetricsPusher
from amplitude_pipeline.defs.tags import DWH_LOAD_POOL, DWH_LOAD_TAGS
from amplitude_pipeline.defs.user_properties.checks import CheckedLoad, check_evaluations_after_load
from amplitude_pipeline.defs.user_properties.loading import (
    START_AFTER_DESCRIPTION,
    FileLoadConfig,
    load_file_into_tables,
    prepare_tables,
)
from amplitude_pipeline.load.event_files import (
    DEFAULT_LOCK_WAIT_SECONDS,
    FileLoadInProgressError,
)
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore


class S3EventFile(Config):
    key: str = Field(description="Object key in S3_BUCKET.")
    etag: str | None = Field(
        default=None,
        description="The ETag seen when the run was requested (informational: the object is loaded "
        "as it is when the run reads it).",
    )
    start_after: int | None = Field(default=None, description=START_AFTER_DESCRIPTION)


class LoadS3EventFilesConfig(FileLoadConfig):
    files: list[S3EventFile] = Field(description="The files, loaded one after another in this order.")
    busy_file_wait_seconds: float = Field(
        default=DEFAULT_LOCK_WAIT_SECONDS,
        ge=0,
        description="How long to wait, once the other files are done, for a file that another run "
        "is loading at the same moment.",
    )


@op(name="load_s3_event_files", out={}, pool=DWH_LOAD_POOL)
def load_s3_event_files_op(
    context: OpExecutionContext,
    config: LoadS3EventFilesConfig,
    dwh: ResourceParam[DWHRepository],
    raw_event_store: ResourceParam[RawEventStore],
    metrics_pusher: MetricsPusher,
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """Load the listed files one after another; report each as it is done.

    A file another run is loading right now is put aside and waited for once the others are
    done (by then it is usually finished, and its checkpoint makes this load a no-op; if its
    content changed meanwhile, it is loaded from the start), so that concurrent runs never lose
    content. The first file that fails stops the run with its position, after the files before
    it have been reported: fix the cause and re-execute the run; loaded files are then skipped
    and the failed one resumes after its checkpoint.
    """
    prepare_tables(dwh, context.log)

    def load(file: S3EventFile, lock_wait_seconds: float) -> Iterator[AssetMaterialization]:
        if file.etag is not None:
            context.log.info(f"loading {raw_event_store.uri(file.key)} (ETag {file.etag} when requested)")
        loaded = load_file_into_tables(
            context,
            dwh,
            raw_event_store,
            metrics_pusher,
            file.key,
            start_after=file.start_after,
            batch_size=config.batch_size,
            if_missing=None,
            lock_wait_seconds=lock_wait_seconds,
        )
        # Yielded, not logged through the context: Dagster drops logged events when the op raises,
        # and the files loaded before a failing one must stay reported.
        for table, metadata in (loaded or {}).items():
            yield AssetMaterialization(
                asset_key=table, description=f"loaded from {raw_event_store.uri(file.key)}", metadata=metadata
            )

    def load_all() -> Iterator[AssetMaterialization]:
        busy: list[S3EventFile] = []
        for file in config.files:
            try:
                yield from load(file, lock_wait_seconds=0)
            except FileLoadInProgressError:
                context.log.info(f"{file.key}: another run is loading it; trying again after the other files")
                busy.append(file)
        for file in busy:
            try:
                yield from load(file, lock_wait_seconds=config.busy_file_wait_seconds)
            except FileLoadInProgressError as error:
                raise Failure(
                    description=str(error), metadata={"file_key": file.key}, allow_retries=False
                ) from error

    files = f"{len(config.files)} S3 file{'s' if len(config.files) != 1 else ''}"
    checked = CheckedLoad(f"the load of {files}", {"files": str(len(config.files))})
    try:
        yield from load_all()
    except Exception:
        # The files before the failing one are in the tables: their checks say what they are now.
        yield from check_evaluations_after_load(dwh, checked, context.instance, context.run_id)
        raise
    yield from check_evaluations_after_load(dwh, checked, context.instance, context.run_id)


@graph
def load_s3_event_files_graph() -> None:
    load_s3_event_files_op()


# Dagster refuses an op and a graph of the same name in one code location, and a job's top-level
# graph takes the job's name unless it is built from a graph of its own: hence graph, then to_job.
load_s3_event_files = load_s3_event_files_graph.to_job(
    name="load_s3_event_files",
    tags=DWH_LOAD_TAGS,
    description="Load a list of Amplitude-format S3 files (gzip JSON lines) into both tables, one after "
    "another; started by s3_new_objects_sensor.",
)
