"""Checks on ``permanent_user_properties`` and ``changeble_user_properties``, after every load.

Each judges the whole table, which every load changes. They run after each load, whatever made
it: in the same run as a week's tables (partitioned like them, so that each weekly load records
each check once, with its week), and at the end of the S3 sensor's job and of the tmp-table
migration (recorded unpartitioned, see :func:`check_evaluations_after_load`). The latest result
is therefore the table's state after its latest load. Each result names the load it followed (its
description; metadata ``week`` for a weekly load). Non-blocking: nothing is downstream of the
tables, and a table that fails one still holds the loaded data; ERROR severity, because each
failure means rows that CONTRACT §6 says cannot exist, or rows someone deleted.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    EventLogRecord,
    IntMetadataValue,
    MetadataValue,
    ResourceParam,
    multi_asset_check,
)
from sqlalchemy import Table

from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.table_audit import FutureRows, IdentityReport, TableAudit, table_audit
from amplitude_pipeline.text import short_repr

IDENTITY_UNIQUE = "identity_unique"
EVENT_TIME_NOT_IN_FUTURE = "event_time_not_in_future"
ROW_COUNT_NEVER_SHRINKS = "row_count_never_shrinks"
# Clocks of the devices, Amplitude and the DWH disagree by a little; more is a data problem
# (a changeable row dated in the future cannot be replaced until that time has passed).
FUTURE_EVENT_TIME_TOLERANCE = timedelta(minutes=5)
ROW_COUNT_METADATA_KEY = "dagster/row_count"
EXAMPLES = 5

_CHECK_DESCRIPTIONS = {
    IDENTITY_UNIQUE: (
        "One row per user (CONTRACT §6): no identity on two rows (ehr_id; in "
        "changeble_user_properties, amplitude_id where ehr_id is NULL) and no row without one."
    ),
    EVENT_TIME_NOT_IN_FUTURE: (
        f"No row's event_time is later than the DWH's clock plus {FUTURE_EVENT_TIME_TOLERANCE}."
    ),
    ROW_COUNT_NEVER_SHRINKS: (
        "The table has at least as many rows as the latest materialization of another run recorded "
        f"in {ROW_COUNT_METADATA_KEY}: loads only insert and update, so fewer rows mean a deletion."
    ),
}
_TABLES = (PERMANENT_TABLE, CHANGEABLE_TABLE)
_TABLE_KEYS = tuple(AssetKey(table) for table in _TABLES)
ALL_TABLE_CHECKS = tuple(
    AssetCheckKey(AssetKey(table), name) for table in _TABLES for name in _CHECK_DESCRIPTIONS
)


@dataclass(frozen=True)
class CheckedLoad:
    """The load a check result follows: said in its description and its metadata."""

    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_week(cls, week: str) -> "CheckedLoad":
        return cls(f"the load of week {week}", {"week": week})


@multi_asset_check(
    name="user_properties_tables_checks",
    specs=[
        # Partitioned like the tables: a weekly load records each check once, with its week (an
        # unpartitioned check in a partitioned run is recorded twice by Dagster 1.13: a result
        # without the week, and a planned entry for the week that is then shown as skipped).
        AssetCheckSpec(name, asset=table, description=description, partitions_def=weekly_partitions)
        for table in _TABLES
        for name, description in _CHECK_DESCRIPTIONS.items()
    ],
    can_subset=True,
    description="identity_unique, event_time_not_in_future and row_count_never_shrinks of both tables.",
)
def user_properties_tables_checks(
    context: AssetCheckExecutionContext, dwh: ResourceParam[DWHRepository]
) -> Iterator[AssetCheckResult]:
    week = context.partition_key
    latest_load = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=_TABLE_KEYS[0], asset_partitions=[week]), limit=1
    ).records
    loaded_in_this_run = bool(latest_load) and latest_load[0].run_id == context.run.run_id
    # Executed on its own (from the UI, which asks for a week), a result follows no load.
    load = CheckedLoad.of_week(week) if loaded_in_this_run else CheckedLoad()
    yield from table_check_results(
        dwh, context.selected_asset_check_keys, load, context.instance, context.run.run_id
    )


def check_evaluations_after_load(
    dwh: DWHRepository, load: CheckedLoad, instance: DagsterInstance, run_id: str
) -> Iterator[AssetCheckEvaluation]:
    """Every table check, judged after a load that is not a weekly asset run (the S3 sensor's job,
    the tmp-table migration): recorded as the checks' latest results, unpartitioned, so that the
    catalog shows the tables' state after that load rather than "not evaluated"."""
    for result in table_check_results(dwh, ALL_TABLE_CHECKS, load, instance, run_id):
        yield as_evaluation(result)


def as_evaluation(result: AssetCheckResult, partition: str | None = None) -> AssetCheckEvaluation:
    """A check's result as an event an op or a sensor reports (the check itself did not run)."""
    assert result.asset_key is not None and result.check_name is not None
    return AssetCheckEvaluation(
        asset_key=result.asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=partition,
    )


def table_check_results(
    dwh: DWHRepository,
    check_keys: Iterable[AssetCheckKey],
    load: CheckedLoad,
    instance: DagsterInstance,
    run_id: str,
) -> list[AssetCheckResult]:
    """The results, all computed before any is handed on: the connection is closed whatever the
    caller then does (a generator paused inside it would hold its transaction, and its locks)."""
    tables = {
        AssetKey(PERMANENT_TABLE): dwh.tables.permanent,
        AssetKey(CHANGEABLE_TABLE): dwh.tables.changeable,
    }
    results = []
    with table_audit(dwh) as audit:
        exists = {key: audit.exists(table) for key, table in tables.items()}
        for check_key in sorted(check_keys, key=lambda key: key.to_user_string()):
            table = tables[check_key.asset_key]
            if not exists[check_key.asset_key]:
                results.append(_result(check_key, load, False, f"{table.fullname} does not exist", {}))
            elif check_key.name == IDENTITY_UNIQUE:
                results.append(identity_unique(audit.identities(table, EXAMPLES), check_key, load))
            elif check_key.name == EVENT_TIME_NOT_IN_FUTURE:
                future = audit.rows_in_future(table, FUTURE_EVENT_TIME_TOLERANCE, EXAMPLES)
                results.append(event_time_not_in_future(future, check_key, load))
            else:
                results.append(row_count_never_shrinks(audit, table, check_key, load, instance, run_id))
    return results


def identity_unique(report: IdentityReport, check_key: AssetCheckKey, load: CheckedLoad) -> AssetCheckResult:
    """Identities on more than one row, per identity rule of the table, and rows with none."""
    metadata: dict[str, Any] = {}
    problems: list[str] = []
    for duplicated in report.duplicated:
        name = duplicated.column
        metadata[f"duplicated_{name}"] = MetadataValue.int(duplicated.values)
        metadata[f"duplicated_{name}_examples"] = MetadataValue.json(
            [{"identity": short_repr(value), "rows": rows} for value, rows in duplicated.most_repeated]
        )
        if duplicated.values:
            problems.append(f"{duplicated.values} {name} value(s) on more than one row")
    metadata["rows_without_identity"] = MetadataValue.int(report.rows_without_identity)
    if report.rows_without_identity:
        problems.append(f"{report.rows_without_identity} row(s) without identity")
    identities = " / ".join(duplicated.column for duplicated in report.duplicated)
    text = "; ".join(problems) if problems else f"one row per {identities}"
    return _result(check_key, load, not problems, text, metadata)


def event_time_not_in_future(
    future: FutureRows, check_key: AssetCheckKey, load: CheckedLoad
) -> AssetCheckResult:
    examples = [
        {
            **{name: short_repr(value) for name, value in row.items() if name not in ("uuid", "event_time")},
            "uuid": row["uuid"],
            "event_time": row["event_time"].isoformat(),
        }
        for row in future.examples
    ]
    metadata = {
        "rows_in_future": MetadataValue.int(future.rows),
        "cutoff": future.cutoff.isoformat(),
        "latest_event_time": future.latest.isoformat() if future.latest else None,
        "examples": MetadataValue.json(examples),
    }
    if future.rows:
        assert future.latest is not None
        text = (
            f"{future.rows} row(s) with event_time after {future.cutoff.isoformat()}, "
            f"the latest {future.latest.isoformat()}"
        )
    else:
        text = f"no event_time after {future.cutoff.isoformat()}"
    return _result(check_key, load, not future.rows, text, metadata)


def row_count_never_shrinks(
    audit: TableAudit,
    table: Table,
    check_key: AssetCheckKey,
    load: CheckedLoad,
    instance: DagsterInstance,
    run_id: str,
) -> AssetCheckResult:
    """Rows now against the row count the latest materialization of another run recorded.

    Another run's, not this run's: this run's own count was taken after its load, so it would
    hide rows deleted before the load. The previous count is read before counting: any count
    recorded was taken before it was recorded, so without deletions the table never has fewer
    rows now, however loads overlap.
    """
    previous = _previous_row_count(instance, check_key.asset_key, run_id)
    rows = audit.row_count(table)
    metadata: dict[str, Any] = {"row_count": MetadataValue.int(rows)}
    if previous is None:
        return _result(
            check_key, load, True, f"{rows} rows; no earlier materialization to compare with", metadata
        )
    previous_rows, record = previous
    metadata |= {
        "previous_row_count": MetadataValue.int(previous_rows),
        "previous_run_id": record.run_id,
        "previous_partition": record.partition_key,
        "difference": MetadataValue.int(rows - previous_rows),
    }
    where = f" (week {record.partition_key})" if record.partition_key else ""
    if rows < previous_rows:
        text = (
            f"{rows} rows, {previous_rows - rows} fewer than the {previous_rows} recorded by run "
            f"{record.run_id}{where}: rows were deleted"
        )
        return _result(check_key, load, False, text, metadata)
    return _result(
        check_key,
        load,
        True,
        f"{rows} rows, {rows - previous_rows} more than run {record.run_id}{where} recorded",
        metadata,
    )


def _previous_row_count(
    instance: DagsterInstance, asset_key: AssetKey, run_id: str
) -> tuple[int, EventLogRecord] | None:
    """The row count of the latest materialization recorded by another run, with its record."""
    cursor = None
    while True:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key), limit=20, cursor=cursor
        )
        for record in page.records:
            materialization = record.asset_materialization
            if record.run_id == run_id or materialization is None:
                continue
            count = materialization.metadata.get(ROW_COUNT_METADATA_KEY)
            if isinstance(count, IntMetadataValue) and count.value is not None:
                return count.value, record
        if not page.has_more:
            return None
        cursor = page.cursor


def _result(
    check_key: AssetCheckKey, load: CheckedLoad, passed: bool, text: str, metadata: dict[str, Any]
) -> AssetCheckResult:
    after = f" after {load.description}" if load.description else ""
    return AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"{check_key.asset_key.to_user_string()}{after}: {text}",
        metadata={**load.metadata, **metadata},
    )
