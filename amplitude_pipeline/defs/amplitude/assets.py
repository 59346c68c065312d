"""``amplitude_events``: one S3 object per finished week, straight from the Export API."""

from datetime import date

from dagster import (
    AssetExecutionContext,
    Backoff,
    Failure,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    RetryPolicy,
    asset,
)

from amplitude_pipeline.amplitude.client import AmplitudeExportError
from amplitude_pipeline.amplitude.export import export_to_object, week_range
from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.resources import AmplitudeExportResource
from amplitude_pipeline.storage.s3 import RawEventStore

# For what the client's and botocore's own retries (about a minute, longer when the server asks)
# leave: an outage that outlasts them, S3 errors they did not cure, a step process that died.
# The week is exported again after 5 minutes, then 15. A failure that a later run would only
# repeat (credentials, an hour too large, an unexpected answer) is a Failure(allow_retries=False),
# which bypasses this policy. Anything else unexpected is retried too: the export is idempotent.
AMPLITUDE_EVENTS_RETRY_POLICY = RetryPolicy(max_retries=2, delay=300, backoff=Backoff.EXPONENTIAL)


@asset(
    partitions_def=weekly_partitions,
    retry_policy=AMPLITUDE_EVENTS_RETRY_POLICY,
    group_name="amplitude",
    kinds={"s3"},
    description=(
        "Raw Amplitude events of one Monday-start UTC week, as gzip JSON lines at "
        "s3://{S3_BUCKET}/{S3_PREFIX}/{week}.jsonl.gz: one Export API request per day, days in "
        "order, each day's hourly files in hour then part order, events byte for byte as served."
    ),
)
def amplitude_events(
    context: AssetExecutionContext,
    amplitude: AmplitudeExportResource,
    raw_event_store: ResourceParam[RawEventStore],
) -> MaterializeResult:
    week = context.partition_key
    key = raw_event_store.week_key(week)
    # Whole or not at all: a failed run leaves nothing under the key, a rerun replaces the object.
    try:
        exported = export_to_object(
            amplitude.get_client(log=context.log), raw_event_store, week_range(date.fromisoformat(week)), key
        )
    except AmplitudeExportError as error:
        raise Failure(
            description=str(error), metadata={"week": week, "s3_key": key}, allow_retries=error.transient
        ) from error
    export, stored = exported.export, exported.stored
    context.log.info(
        f"week {week}: {export.events} events, {stored.size} bytes -> {raw_event_store.uri(key)}"
    )
    return MaterializeResult(
        metadata={
            "events": MetadataValue.int(export.events),
            "bytes": MetadataValue.int(stored.size),
            "empty_days": MetadataValue.json(export.empty_days),
            "s3_uri": MetadataValue.url(raw_event_store.uri(key)),
            "s3_key": key,
            "etag": stored.etag,
            "api_requests": MetadataValue.int(export.requests),
            "duration_seconds": MetadataValue.float(exported.duration_seconds),
        }
    )
