"""``s3_new_objects_sensor``: new or replaced event files under the watched prefixes, loaded in runs.

The finding is ``amplitude_pipeline.load.s3_discovery`` (sweeps, watermark, requested set; the
cursor's shape is documented there); this layer only reads the cursor, groups what was found
into runs of ``load_s3_event_files`` and stores the cursor. Everything it knows between ticks is
in that cursor and in the DWH, so it behaves the same in the daemon as in a test.
"""

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

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
    finished_checkpoint_etags,
    group_into_runs,
    normalize_prefixes,
)
from amplitude_pipeline.settings import SETTINGS
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore

FILE_COUNT_TAG = "s3_files"
BYTES_TAG = "s3_bytes"


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
            f"into both tables, with {load_s3_event_files.name} runs of up to {limits.max_files_per_run} "
            "files."
        ),
    )
    def s3_new_objects_sensor(
        context: SensorEvaluationContext, raw_event_store: RawEventStore, dwh: DWHRepository
    ) -> SensorResult:
        def finished(keys: Collection[str]) -> dict[str, str]:
            return finished_checkpoint_etags(dwh, keys)

        found = discover(
            DiscoveryCursor.from_json(context.cursor, log=context.log),
            watched,
            raw_event_store,
            finished,
            now=datetime.now(UTC),
            limits=limits,
        )
        groups = group_into_runs(found.files, limits)
        summary = (
            f"listed {found.objects_listed} objects in {found.pages_listed} pages"
            + (
                f", completed a sweep of {', '.join(map(_shown, found.sweeps_completed))}"
                if found.sweeps_completed
                else ""
            )
            + f"; {len(found.files)} files to load in {len(groups)} runs"
        )
        context.log.info(summary)
        return SensorResult(
            run_requests=[_run_request(group) for group in groups],
            skip_reason=None if groups else summary,
            cursor=found.cursor.to_json(),
        )

    return s3_new_objects_sensor


def _run_request(group: FileGroup) -> RunRequest:
    config = LoadS3EventFilesConfig(files=[S3EventFile(key=obj.key, etag=obj.etag) for obj in group.files])
    return RunRequest(
        run_key=group.run_key,
        run_config=RunConfig(ops={load_s3_event_files_op.name: config}),
        tags={**DWH_LOAD_TAGS, FILE_COUNT_TAG: str(len(group.files)), BYTES_TAG: str(group.total_bytes)},
    )


def _shown(prefix: str) -> str:
    return prefix or "the whole bucket"


s3_new_objects_sensor = build_s3_new_objects_sensor(SETTINGS.s3_watch_prefixes, SETTINGS.s3_watch_limits)
