"""``user_properties_keys_known``: the whole week audited against the mapping at once.

Partitioned like ``amplitude_events``: each week keeps its own result, so a later week passing
does not hide an older week's failure, and a week fixed and re-run turns its own result green.
The automation of the table assets waits for the week's result (``all_deps_blocking_checks_passed``).
"""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    ResourceParam,
    asset_check,
)

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.mapping.assistant import audit_and_propose
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.audit import AuditReport, audit_user_properties
from amplitude_pipeline.transform.mapping import FieldMappings


@asset_check(
    asset=amplitude_events,
    blocking=True,
    partitions_def=weekly_partitions,
    description=(
        "Streams the week's object and lists every user_properties key the mapping does not "
        "know and every value it cannot convert (count, first line, example), so the mapping "
        "can be fixed in one pass. Judged per week; while a week fails, its table assets are "
        "blocked in the same run and not loaded by the automation."
    ),
)
def user_properties_keys_known(
    context: AssetCheckExecutionContext,
    raw_event_store: ResourceParam[RawEventStore],
    field_mappings: ResourceParam[FieldMappings],
) -> AssetCheckResult:
    week = context.partition_key
    key = raw_event_store.week_key(week)
    with raw_event_store.open_lines(key) as (stored, lines):
        report = audit_user_properties(lines, field_mappings)
    metadata = {"week": week, "file_key": stored.key, "etag": stored.etag, **audit_metadata(report)}
    if not report.passed:
        # What to paste into field_mappings.yaml, from a second pass over the object (only when the
        # check fails: the profile of every key costs about a third more than the audit alone).
        with raw_event_store.open_lines(key) as (_, lines):
            _, snippet = audit_and_propose(lines, field_mappings, raw_event_store.uri(key))
        metadata["mapping_snippet"] = MetadataValue.md(
            "Paste into field_mappings.yaml (each entry into the section of the same name), then export "
            f"the week again:\n\n```yaml\n{snippet}```"
        )
    return AssetCheckResult(
        passed=report.passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"Week {week} ({raw_event_store.uri(stored.key)}): {report.summary(max_rows=5)}",
        metadata=metadata,
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
