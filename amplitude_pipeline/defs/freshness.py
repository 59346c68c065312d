"""Freshness (CONTRACT §3) as weekly asset checks, judged in runs and by a sensor between them.

``freshness`` on ``amplitude_events`` says whether a week was exported by its deadline (the Monday
after it, 06:00 UTC); ``freshness`` on each table says whether a week's tables followed its export
within 2 hours (``amplitude_pipeline.load.freshness``). They are partitioned like their assets, so
each late week shows in the check's partitions and stays red until it is fixed, whatever later
weeks do. They run with their assets (a week exported or loaded turns its own check green), and
``freshness_sensor`` judges them every minute without starting runs: it records a result when a
week turns late (the deadline passes, the 2 hours run out) and when a late week is fresh again.

Why not ``FreshnessPolicy``: in Dagster 1.13 it judges the latest materialization of any partition,
so a backfill of an old week would make a missing latest week look fresh.
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime

import orjson
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetRecordsFilter,
    DagsterInstance,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    multi_asset_check,
    sensor,
)

from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.defs.user_properties.automation import EVENTS, TABLES, InstanceWeeks
from amplitude_pipeline.defs.user_properties.checks import as_evaluation
from amplitude_pipeline.load.freshness import (
    TABLES_MAX_LAG,
    Freshness,
    export_freshness,
    latest_due_week,
    tables_freshness,
)

FRESHNESS = "freshness"
EXPORT_FRESHNESS = AssetCheckKey(EVENTS, FRESHNESS)
TABLES_FRESHNESS = tuple(AssetCheckKey(table, FRESHNESS) for table in TABLES)
_DESCRIPTIONS = {
    EVENTS: "The week is exported by the Monday after it, 06:00 UTC (weekly_amplitude_export runs at 03:00).",
    **{
        table: f"The week's tables follow its latest amplitude_events within {TABLES_MAX_LAG}."
        for table in TABLES
    },
}


@multi_asset_check(
    name="freshness_checks",
    specs=[
        AssetCheckSpec(FRESHNESS, asset=key, description=text, partitions_def=weekly_partitions)
        for key, text in _DESCRIPTIONS.items()
    ],
    can_subset=True,
    description="Whether each week's export, and each week's tables, arrived on time.",
)
def freshness_checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckResult]:
    week = context.partition_key
    now = current_time()
    for check_key in context.selected_asset_check_keys:
        yield _result(check_key, week, judge(context.instance, check_key, date.fromisoformat(week), now))


def current_time() -> datetime:
    return datetime.now(UTC)


def judge(instance: DagsterInstance, check_key: AssetCheckKey, week: date, now: datetime) -> Freshness:
    exported_at = _exported_at(instance, week.isoformat())
    if check_key == EXPORT_FRESHNESS:
        return export_freshness(week, exported_at, now)
    tables = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=[week.isoformat()]), limit=1
    ).records
    newer = bool(tables) and exported_at is not None and tables[0].timestamp >= exported_at.timestamp()
    return tables_freshness(week, exported_at, newer, now)


@sensor(
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Records amplitude_events' and the tables' freshness checks when a week turns late "
    "(its export's deadline passes, its tables lag its export by over 2 hours) or fresh again. "
    "Reads the instance only; starts no run.",
)
def freshness_sensor(context: SensorEvaluationContext) -> SensorResult:
    assert context.repository_def is not None, "the daemon evaluates sensors with their repository"
    instance, now = context.instance, current_time()
    reported: dict[str, bool] = orjson.loads(context.cursor) if context.cursor else {}
    due: list[tuple[AssetCheckKey, date]] = []
    week = latest_due_week(now, SETTINGS.start_date)
    if week is not None:
        due.append((EXPORT_FRESHNESS, week))
    weeks = InstanceWeeks(instance, context.repository_def.asset_graph)
    lagging = sorted(name for name in weeks.weeks() if weeks.facts_of(name).tables_behind_export)
    due += [(key, date.fromisoformat(name)) for name in lagging for key in TABLES_FRESHNESS]
    # And every check reported late before: it is reported again once it is fresh.
    due += [_parse(entry) for entry, fresh in reported.items() if not fresh]

    events, state = [], {}
    for check_key, checked_week in dict.fromkeys(due):
        verdict = judge(instance, check_key, checked_week, now)
        entry = f"{check_key.to_user_string()}@{checked_week}"
        if not verdict.fresh:
            state[entry] = False
        if verdict.fresh != reported.get(entry, True):  # unreported means fresh (or judged in a run)
            key = checked_week.isoformat()
            events.append(as_evaluation(_result(check_key, key, verdict), partition=key))
    return SensorResult(asset_events=events, cursor=orjson.dumps(state).decode())


def _result(check_key: AssetCheckKey, week: str, verdict: Freshness) -> AssetCheckResult:
    metadata: dict[str, MetadataValue] = {"week": MetadataValue.text(week)}
    if verdict.overdue_since is not None:
        metadata["overdue_since"] = MetadataValue.timestamp(verdict.overdue_since)
    return AssetCheckResult(
        asset_key=check_key.asset_key,
        check_name=check_key.name,
        passed=verdict.fresh,
        severity=AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata=metadata,
    )


def _exported_at(instance: DagsterInstance, week: str) -> datetime | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=EVENTS, asset_partitions=[week]), limit=1
    ).records
    return datetime.fromtimestamp(records[0].timestamp, UTC) if records else None


def _parse(entry: str) -> tuple[AssetCheckKey, date]:
    check, _, week = entry.rpartition("@")
    return AssetCheckKey.from_user_string(check), date.fromisoformat(week)
