"""Export jobs: the weekly asset job, and ``export_amplitude_range`` (a date range into a directory)."""

import posixpath
import time
from datetime import UTC, datetime
from typing import Any

from dagster import (
    AssetSelection,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    ResourceParam,
    TableColumn,
    TableRecord,
    TableSchema,
    define_asset_job,
    graph,
    op,
)
from pydantic import Field

from amplitude_pipeline.amplitude.export import (
    DAY_COMPLETE_AT_UTC,
    ExportedPiece,
    ExportRangeError,
    RangeExportError,
    export_range,
    last_finished_week,
    parse_export_range,
)
from amplitude_pipeline.defs.resources import AmplitudeExportResource
from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.storage.s3 import RawEventStore

export_amplitude_events = define_asset_job(
    "export_amplitude_events",
    selection=AssetSelection.assets("amplitude_events"),
    description="Export one finished week from Amplitude into S3.",
)


class ExportAmplitudeRangeConfig(Config):
    start_date: str = Field(description="First UTC day to export, YYYY-MM-DD (included).")
    end_date: str = Field(
        description=(
            "Last UTC day to export, YYYY-MM-DD (included). It must be complete: a day can be "
            f"exported from {DAY_COMPLETE_AT_UTC} UTC the day after."
        )
    )
    directory: str = Field(
        description=(
            "Key prefix inside S3_BUCKET (leading/trailing '/' dropped). Each Monday-start week of "
            "the range, clipped to it, becomes {directory}/{its first day}.jsonl.gz, replacing any "
            "object there. With directory = S3_PREFIX and Monday-to-Sunday ranges these are the "
            "amplitude_events partitions' objects."
        )
    )


def default_range_directory(s3_prefix: str) -> str:
    """``ranges`` beside the weekly objects (``amplitude/events`` → ``amplitude/ranges``): under the
    same parent, so the same bucket policy covers it, but not among the weekly objects."""
    parent = posixpath.dirname(s3_prefix.strip("/"))
    return f"{parent}/ranges" if parent else "ranges"


_OBJECTS_SCHEMA = TableSchema(
    columns=[
        TableColumn("s3_key", "string"),
        TableColumn("first_day", "string"),
        TableColumn("last_day", "string"),
        TableColumn("events", "int"),
        TableColumn("bytes", "int"),
        TableColumn("empty_days", "string"),
        TableColumn("etag", "string"),
        TableColumn("s3_uri", "string"),
    ]
)


@op(
    # The contract names the op like its job; the Python name cannot be both.
    name="export_amplitude_range",
    out=Out(
        description="One entry per object written: s3_key, s3_uri, days, events, bytes, empty days, etag."
    ),
    description=(
        "Export start_date..end_date from the Export API into {directory}/{first day}.jsonl.gz, one "
        "object per Monday-start week clipped to the range, each written whole or not at all."
    ),
)
def export_amplitude_range_op(
    context: OpExecutionContext,
    config: ExportAmplitudeRangeConfig,
    amplitude: AmplitudeExportResource,
    raw_event_store: ResourceParam[RawEventStore],
) -> Output[list[dict[str, Any]]]:
    started = time.monotonic()
    try:
        request = parse_export_range(
            config.start_date, config.end_date, config.directory, now=datetime.now(UTC)
        )
    except ExportRangeError as error:
        raise Failure(description=str(error)) from None  # the message says it all; no trace
    directory_uri = raw_event_store.uri(f"{request.directory}/")
    context.log.info(
        f"exporting {request.first_day}..{request.last_day} into {len(request.pieces())} object(s) under "
        f"{directory_uri} (objects already there are replaced)"
    )
    try:
        pieces = export_range(amplitude.get_client(log=context.log), raw_event_store, request, context.log)
    except RangeExportError as error:
        raise Failure(
            description=str(error),
            metadata={
                "first_day": str(error.piece.first_day),
                "last_day": str(error.piece.last_day),
                "s3_key": error.key,
                "objects_written": MetadataValue.json([done.key for done in error.written]),
            },
        ) from error
    written = [_row(done, raw_event_store.uri(done.key)) for done in pieces]
    return Output(
        written,
        metadata={
            "first_day": str(request.first_day),
            "last_day": str(request.last_day),
            "directory_uri": directory_uri,
            "object_count": MetadataValue.int(len(written)),
            "events": MetadataValue.int(sum(row["events"] for row in written)),
            "bytes": MetadataValue.int(sum(row["bytes"] for row in written)),
            "empty_days": MetadataValue.json([day for row in written for day in row["empty_days"]]),
            "api_requests": MetadataValue.int(sum(row["api_requests"] for row in written)),
            "objects": MetadataValue.table([_table_record(row) for row in written], schema=_OBJECTS_SCHEMA),
            "duration_seconds": MetadataValue.float(round(time.monotonic() - started, 3)),
        },
    )


def _row(done: ExportedPiece, uri: str) -> dict[str, Any]:
    export, stored = done.exported.export, done.exported.stored
    return {
        "s3_key": done.key,
        "s3_uri": uri,
        "first_day": str(done.piece.first_day),
        "last_day": str(done.piece.last_day),
        "events": export.events,
        "bytes": stored.size,
        "empty_days": export.empty_days,
        "etag": stored.etag,
        "api_requests": export.requests,
        "duration_seconds": done.exported.duration_seconds,
    }


def _table_record(row: dict[str, Any]) -> TableRecord:
    cells = {column.name: row[column.name] for column in _OBJECTS_SCHEMA.columns}
    return TableRecord({**cells, "empty_days": ", ".join(row["empty_days"])})


_LAST_WEEK = last_finished_week(datetime.now(UTC))


@graph
def export_amplitude_range_graph() -> None:
    export_amplitude_range_op()


# A job's top-level graph takes the job's name unless built from a graph of its own, and Dagster
# refuses an op and a graph of the same name in one code location: hence graph, then to_job.
export_amplitude_range = export_amplitude_range_graph.to_job(
    name="export_amplitude_range",
    description=(
        "Export a date range (both ends included) into {directory}/{first day}.jsonl.gz, one object "
        "per Monday-start UTC week clipped to the range. The Launchpad opens with the last finished "
        "week (as of when the code location loaded) and a directory beside S3_PREFIX."
    ),
    config={
        "ops": {
            "export_amplitude_range": {
                "config": {
                    "start_date": str(_LAST_WEEK.first_day),
                    "end_date": str(_LAST_WEEK.last_day),
                    "directory": default_range_directory(SETTINGS.s3_prefix),
                }
            }
        }
    },
)
