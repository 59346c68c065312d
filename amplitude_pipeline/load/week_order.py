"""Which week's tables to load next, so that the tables always equal a load in week order.

CONTRACT §6 resolves each user's rows against what the tables already hold ("replace only when
strictly later and different", "the first value loaded wins"), so the result of loading week W
depends on whether week W-1 was loaded before it. CONTRACT §7 therefore asks that the tables,
after any backfill and with any concurrency, equal those of loading the weekly objects one by
one in week order. The rule that gives this, whatever the timing:

- A week is *settled* when its tables were materialized after its latest export, or when it was
  never exported (it has no object to load).
- Only the earliest week that is not settled may load; every later week waits for it. A week
  whose export is still running (or waits in a backfill) is not settled either: a later week
  that finished exporting first must not overtake it.
- That week loads when its latest export passed ``user_properties_keys_known`` and no run of its
  tables has been tried since that export. A run that is loading it, or that failed after the
  export, is not started again on every tick: the week waits for that run (a person fixes the
  cause and re-executes it, or exports the week again).

The decision is made from state (which export and which tables materialization is newer), never
from events seen by an earlier evaluation: an export that finished before the automation first
ran, while it was off, or while the daemon was down is loaded all the same. No Dagster here: the
sensor (``defs/user_properties/automation.py``) reads the facts from the instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class TablesAttempt:
    """The latest run that set out to materialize a week's tables."""

    run_id: str
    storage_id: int
    """Of its planned-materialization event: later events have larger ids."""
    finished: bool


@dataclass(frozen=True)
class WeekFacts:
    """What the instance knows about one week, as far as the order of loads needs it."""

    week: str
    export_id: int | None = None
    """Storage id of the week's latest ``amplitude_events`` materialization; None: never exported."""
    export_run_id: str | None = None
    export_pending: bool = False
    """An export of the week is running, or waits in a backfill that has not reached it yet."""
    tables_id: int | None = None
    """Storage id of the week's latest table materialization."""
    tables_attempt: TablesAttempt | None = None
    check_passed: bool = False
    """``user_properties_keys_known`` passed against the week's latest export."""

    @property
    def tables_behind_export(self) -> bool:
        return self.export_id is not None and (self.tables_id is None or self.tables_id < self.export_id)


class Verdict(Enum):
    SETTLED = "settled"
    """Nothing to load for this week; the next week may go."""
    LOAD = "load"
    """Load this week's tables now."""
    WAIT = "wait"
    """This week cannot load now, and no later week may load before it."""


@dataclass(frozen=True)
class WeekDecision:
    week: str
    verdict: Verdict
    reason: str


def decide_week(facts: WeekFacts) -> WeekDecision:
    """The verdict for one week, given that every earlier week is settled."""
    week = facts.week
    if facts.export_pending:
        return _wait(week, "its export is running or waiting in a backfill")
    if not facts.tables_behind_export:
        return WeekDecision(week, Verdict.SETTLED, "its tables are newer than its export, or it has none")
    attempt = facts.tables_attempt
    if attempt is not None and not attempt.finished:
        return _wait(week, f"its tables are being loaded by run {attempt.run_id}")
    if attempt is not None and _attempt_followed_export(attempt, facts):
        return _wait(
            week,
            f"run {attempt.run_id} tried its tables after its latest export and did not materialize "
            "them: fix the cause, then re-execute that run (it resumes after its checkpoint), "
            "materialize the week's tables, or export the week again",
        )
    if not facts.check_passed:
        return _wait(
            week,
            "user_properties_keys_known has not passed for its latest export (see the check's "
            "result: fix field_mappings.yaml, then export the week again or execute the check)",
        )
    return WeekDecision(week, Verdict.LOAD, "its export is newer than its tables and passed its key check")


def next_week_to_load(weeks: Iterable[str], facts_of: Callable[[str], WeekFacts]) -> WeekDecision | None:
    """The first week, in week order, that is not settled, and what to do about it; None when every
    week is settled. ``facts_of`` is asked only up to that week (it may query the instance)."""
    for week in sorted(weeks):
        decision = decide_week(facts_of(week))
        if decision.verdict is not Verdict.SETTLED:
            return decision
    return None


def _attempt_followed_export(attempt: TablesAttempt, facts: WeekFacts) -> bool:
    """Whether the attempt is about the week's latest export: planned after it, or in the very run
    that made it (a run of the export and the tables plans both before it exports)."""
    assert facts.export_id is not None
    return attempt.storage_id > facts.export_id or attempt.run_id == facts.export_run_id


def _wait(week: str, why: str) -> WeekDecision:
    return WeekDecision(week, Verdict.WAIT, f"week {week} waits: {why}; later weeks wait for it")
