"""``s3_new_objects_sensor``: new or replaced event files under the watched prefixes, loaded in runs.

The finding is ``amplitude_pipeline.load.s3_discovery`` (sweeps, watermark, requested set, data
order; the cursor's shape is documented there); this layer asks the instance which prefixes must
wait, turns what was found into runs of ``load_s3_event_files`` and stores the cursor. Everything
it knows between ticks is in that cursor, in the DWH and in the instance's runs, so it behaves the
same in the daemon as in a test.

Files of one prefix load in the order of their data (CONTRACT §3), so a later run of a prefix
must never overtake an earlier one: runs carry their prefix in ``PREFIX_TAG``, and a prefix gets
no new run while one of its runs is in flight, nor while its latest run has failed or was
canceled (its later files wait for it) until a re-execution of that run succeeds. Re-executions,
from the UI, the Python API or run retries, copy the parent run's tags, prefix included.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    ResourceParam,
    RunConfig,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.defs.user_properties.jobs import (
    LoadS3EventFilesConfig,
    S3EventFile,
    load_s3_event_files,
    load_s3_event_files_op,
)
from amplitude_pipeline.load.s3_discovery import (
    DiscoveryCursor,
    DiscoveryLimits,
    FileGroup,
    discover,
    normalize_prefixes,
)
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore

FILE_COUNT_TAG = "s3_files"
BYTES_TAG = "s3_bytes"
PREFIX_TAG = "amplitude_pipeline/s3_prefix"
"""The watched prefix whose files a run loads (``/`` for the whole bucket)."""

IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUSPENDED,
]
STOPPED_STATUSES = {DagsterRunStatus.FAILURE: "failed", DagsterRunStatus.CANCELED: "was canceled"}


def build_s3_new_objects_sensor(
    prefixes: Sequence[str], limits: DiscoveryLimits, minimum_interval_seconds: int = 30
) -> SensorDefinition:
    watched = normalize_prefixes(prefixes)
    if not watched:
        raise ValueError("s3_new_objects_sensor needs at least one prefix to watch")

    @sensor(
        name="s3_new_objects_sensor",
        job=load_s3_event_files,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            f"Loads new or replaced .json.gz/.jsonl.gz objects under {', '.join(map(_shown, watched))} "
            f"into both tables, in the order of their data, with {load_s3_event_files.name} runs of up "
            f"to {limits.max_files_per_run} files, one run at a time per prefix."
        ),
    )
    def s3_new_objects_sensor(
        context: SensorEvaluationContext,
        raw_event_store: ResourceParam[RawEventStore],
        dwh: ResourceParam[DWHRepository],
    ) -> SensorResult:
        def finished(keys: Collection[str]) -> dict[str, str]:
            return dwh.finished_checkpoint_etags(keys)

        waiting = waiting_prefixes(context.instance, watched)
        found = discover(
            DiscoveryCursor.from_json(context.cursor, log=context.log),
            watched,
            raw_event_store,
            finished,
            now=datetime.now(UTC),
            limits=limits,
            waiting=waiting,
        )
        for warning in found.warnings:
            context.log.warning(warning)
        for wait in waiting.values():
            (context.log.warning if wait.stuck else context.log.info)(wait.reason)
        summary = (
            f"listed {_count(found.objects_listed, 'object')} in {_count(found.pages_listed, 'page')}"
            + (
                f", completed a sweep of {', '.join(map(_shown, found.sweeps_completed))}"
                if found.sweeps_completed
                else ""
            )
            + f"; {_count(len(found.files), 'file')} to load in {_count(len(found.runs), 'run')}"
            + "".join(f"; {wait.reason}" for wait in waiting.values())
        )
        context.log.info(summary)
        return SensorResult(
            run_requests=[_run_request(run) for run in found.runs],
            skip_reason=None if found.runs else summary,
            cursor=found.cursor.to_json(),
        )

    return s3_new_objects_sensor


@dataclass(frozen=True)
class PrefixWait:
    reason: str
    stuck: bool
    """Its latest run failed or was canceled: it waits for a person."""


def waiting_prefixes(instance: DagsterInstance, prefixes: Sequence[str]) -> Mapping[str, PrefixWait]:
    """``{prefix: why it waits}`` for the prefixes that must not get a run now: one of their runs
    is in flight, or their latest run failed or was canceled (strict order: a stuck file holds
    back the later files of its prefix until a re-execution of its run succeeds)."""
    waiting = {}
    for prefix in prefixes:
        tags = {PREFIX_TAG: prefix_tag_value(prefix)}
        in_flight = instance.get_runs(
            RunsFilter(job_name=load_s3_event_files.name, tags=tags, statuses=IN_FLIGHT_STATUSES), limit=1
        )
        if in_flight:
            run = in_flight[0]
            waiting[prefix] = PrefixWait(
                f"{_shown(prefix)} waits for run {run.run_id} ({run.status.value.lower()}) to finish "
                "before its next files",
                stuck=False,
            )
            continue
        latest = instance.get_runs(RunsFilter(job_name=load_s3_event_files.name, tags=tags), limit=1)
        if latest and latest[0].status in STOPPED_STATUSES:
            run = latest[0]
            waiting[prefix] = PrefixWait(
                f"{_shown(prefix)} waits: run {run.run_id} {STOPPED_STATUSES[run.status]}, and the later "
                f"files of this prefix load only after it; fix the cause, then re-execute run {run.run_id}: "
                "loaded files are skipped, the failed file resumes after its checkpoint",
                stuck=True,
            )
    return waiting


def prefix_tag_value(prefix: str) -> str:
    return prefix or "/"


def _run_request(run: FileGroup) -> RunRequest:
    config = LoadS3EventFilesConfig(files=[S3EventFile(key=obj.key, etag=obj.etag) for obj in run.files])
    return RunRequest(
        run_key=run.run_key,
        run_config=RunConfig(ops={load_s3_event_files_op.name: config}),
        tags={
            **DWH_LOAD_TAGS,
            PREFIX_TAG: prefix_tag_value(run.prefix),
            FILE_COUNT_TAG: str(len(run.files)),
            BYTES_TAG: str(run.total_bytes),
        },
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _shown(prefix: str) -> str:
    return prefix or "the whole bucket"


s3_new_objects_sensor = build_s3_new_objects_sensor(SETTINGS.s3_watch_prefixes, SETTINGS.s3_watch_limits)
