"""The two table assets follow every week's export with no person acting, one week at a time.

``tables_after_export_sensor`` reads from the instance which weeks were exported, which have
tables newer than their export, which exports are running or waiting in a backfill, and the key
check of each export; ``amplitude_pipeline.load.week_order`` decides from that state which week
loads next (the earliest one not settled, and only when every earlier week is). Being state, not
events, it converges whatever the timing: an export finished before the daemon started, while
the sensor was off, or before a deploy is followed by its tables at the next tick.

Why not declarative automation: its conditions are event-based (``since_last_handled`` forgets
what happened before its first evaluation), and none of its operands says "every earlier
partition of this asset is settled", which the week order needs.
"""

from collections.abc import Mapping

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from amplitude_pipeline.defs.tags import DWH_LOAD_TAGS
from amplitude_pipeline.load.week_order import TablesAttempt, Verdict, WeekFacts, next_week_to_load
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE

EVENTS = AssetKey("amplitude_events")
TABLES = (AssetKey(PERMANENT_TABLE), AssetKey(CHANGEABLE_TABLE))
KEYS_CHECK = AssetCheckKey(EVENTS, "user_properties_keys_known")
_UNFINISHED = frozenset(IN_PROGRESS_RUN_STATUSES) | {DagsterRunStatus.CANCELING}


class InstanceWeeks:
    """The facts of :class:`WeekFacts`, read from a Dagster instance; the costly ones (runs,
    check results) only for the weeks whose tables are behind their export."""

    def __init__(self, instance: DagsterInstance, asset_graph: BaseAssetGraph) -> None:
        self._instance = instance
        self._export_ids = _by_partition(instance, EVENTS, DagsterEventType.ASSET_MATERIALIZATION)
        self._tables_ids = _by_partition(instance, TABLES[0], DagsterEventType.ASSET_MATERIALIZATION)
        self._pending_exports = _running_exports(instance) | _exports_waiting_in_backfills(
            instance, asset_graph
        )

    def weeks(self) -> set[str]:
        return set(self._export_ids) | self._pending_exports

    def facts_of(self, week: str) -> WeekFacts:
        facts = WeekFacts(
            week,
            export_id=self._export_ids.get(week),
            export_pending=week in self._pending_exports,
            tables_id=self._tables_ids.get(week),
        )
        if facts.export_pending or not facts.tables_behind_export:
            return facts
        return WeekFacts(
            week,
            export_id=facts.export_id,
            export_run_id=self._export_run_id(week),
            tables_id=facts.tables_id,
            tables_attempt=self._tables_attempt(week),
            check_passed=self._check_passed(week),
        )

    def _export_run_id(self, week: str) -> str | None:
        records = self._instance.fetch_materializations(
            AssetRecordsFilter(asset_key=EVENTS, asset_partitions=[week]), limit=1
        ).records
        return records[0].run_id if records else None

    def _tables_attempt(self, week: str) -> TablesAttempt | None:
        planned = self._instance.get_latest_planned_materialization_info(TABLES[0], week)
        if planned is None:
            return None
        run = self._instance.get_run_by_id(planned.run_id)
        finished = run is None or run.status not in _UNFINISHED
        return TablesAttempt(planned.run_id, planned.storage_id, finished)

    def _check_passed(self, week: str) -> bool:
        infos = self._instance.event_log_storage.get_asset_check_partition_info(
            [KEYS_CHECK], partition_keys=[week]
        )
        return any(
            info.partition_key == week
            and info.latest_execution_status == AssetCheckExecutionRecordStatus.SUCCEEDED
            and info.is_current
            for info in infos
        )


def tables_backfill_in_progress(instance: DagsterInstance) -> str | None:
    """The id of a backfill in progress that loads the tables: it orders its weeks itself (the
    tables depend on their previous week), so the automation leaves the tables to it."""
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        if set(backfill.asset_selection or ()) & set(TABLES):
            return backfill.backfill_id
    return None


@sensor(
    name="tables_after_export_sensor",
    asset_selection=AssetSelection.assets(*TABLES),
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Loads permanent_user_properties and changeble_user_properties for each week whose "
        "amplitude_events is newer than its tables and passed user_properties_keys_known, one week "
        "at a time in week order (CONTRACT §7), whenever and however the week was exported. A week "
        "that cannot load (its key check failed, its table run failed) holds back the later weeks. "
        "Its runs carry the DWH-load tag the production queue limits. Stop it to load tables only by hand."
    ),
)
def tables_after_export_sensor(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    instance = context.instance
    backfill = tables_backfill_in_progress(instance)
    if backfill is not None:
        return SkipReason(f"backfill {backfill} loads the tables; its weeks load in week order")
    assert context.repository_def is not None, "the daemon evaluates sensors with their repository"
    weeks = InstanceWeeks(instance, context.repository_def.asset_graph)
    decision = next_week_to_load(weeks.weeks(), weeks.facts_of)
    if decision is None:
        return SkipReason("every exported week has tables newer than its export")
    if decision.verdict is Verdict.WAIT:
        return SkipReason(decision.reason)
    facts = weeks.facts_of(decision.week)
    context.log.info(f"week {decision.week}: {decision.reason}")
    return RunRequest(
        run_key=f"tables-{decision.week}-after-export-{facts.export_id}",
        partition_key=decision.week,
        asset_selection=list(TABLES),
        tags=DWH_LOAD_TAGS,
    )


def _by_partition(instance: DagsterInstance, key: AssetKey, event_type: DagsterEventType) -> dict[str, int]:
    return {
        partition: storage_id
        for partition, storage_id in instance.get_latest_storage_id_by_partition(key, event_type).items()
        if partition is not None
    }


def _running_exports(instance: DagsterInstance) -> set[str]:
    """Weeks whose latest planned export has not materialized and whose run is unfinished."""
    attempts: Mapping[str, tuple[str, int]] = (
        instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(
            EVENTS
        )
    )
    if not attempts:
        return set()
    unfinished = {
        record.dagster_run.run_id
        for record in instance.get_run_records(
            RunsFilter(run_ids=[run_id for run_id, _ in attempts.values()], statuses=list(_UNFINISHED))
        )
    }
    return {week for week, (run_id, _) in attempts.items() if run_id in unfinished}


def _exports_waiting_in_backfills(instance: DagsterInstance, asset_graph: BaseAssetGraph) -> set[str]:
    """Weeks of ``amplitude_events`` that a backfill in progress targets and has neither
    materialized nor given up on."""
    waiting: set[str] = set()
    for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
        if not backfill.is_asset_backfill or EVENTS not in set(backfill.asset_selection or ()):
            continue
        data = backfill.get_asset_backfill_data(asset_graph)
        remaining = data.get_targeted_partitions_without_materialization_status()
        subset = remaining.partitions_subsets_by_asset_key.get(EVENTS)
        if subset is not None:
            waiting |= set(subset.get_partition_keys())
    return waiting
