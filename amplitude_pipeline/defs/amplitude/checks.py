"""``user_properties_keys_known``: the whole week audited against the mapping at once."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.audit import AuditReport, audit_user_properties


@asset_check(
    asset=amplitude_events,
    blocking=True,
    description=(
        "Streams the week's object and lists every user_properties key the mapping does not "
        "know and every value it cannot convert (count, first line, example), so the mapping "
        "can be fixed in one pass. Blocks the week's table assets in the same run while it fails."
    ),
)
def user_properties_keys_known(
    context: AssetCheckExecutionContext, raw_event_store: RawEventStore, dwh: DWHRepository
) -> AssetCheckResult:
    key = raw_event_store.week_key(context.partition_key)
    with raw_event_store.open_lines(key) as (stored, lines):
        report = audit_user_properties(lines, dwh.mappings)
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR,
        description=None if report.passed else report.summary(),
        metadata={"file_key": stored.key, "etag": stored.etag, **audit_metadata(report)},
    )


def audit_metadata(report: AuditReport) -> dict[str, MetadataValue]:
    return {
        "lines_scanned": MetadataValue.int(report.lines_scanned),
        "unknown_keys": MetadataValue.int(len(report.unknown_keys)),
        "conversion_failures": MetadataValue.int(len(report.conversion_failures)),
        "malformed_lines": MetadataValue.int(report.malformed_lines),
        "findings": MetadataValue.md(report.summary()),
        "unknown_key_details": MetadataValue.json(
            [
                {
                    "key": item.key,
                    "count": item.count,
                    "first_line": item.first_line,
                    "example": item.example_value,
                }
                for item in report.unknown_keys
            ]
        ),
        "conversion_failure_details": MetadataValue.json(
            [
                {
                    "key": item.key,
                    "column": item.column,
                    "type": item.column_type,
                    "count": item.count,
                    "first_line": item.first_line,
                    "example": item.example_value,
                    "reason": item.reason,
                }
                for item in report.conversion_failures
            ]
        ),
    }
