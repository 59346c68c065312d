"""The order of table loads (CONTRACT §7): the earliest unsettled week, and only it."""

import pytest

from amplitude_pipeline.load.week_order import (
    TablesAttempt,
    Verdict,
    WeekFacts,
    decide_week,
    next_week_to_load,
)

W1, W2, W3 = "2024-01-01", "2024-01-08", "2024-01-15"


def exported(week: str, export_id: int, **facts: object) -> WeekFacts:
    """A week exported (storage id ``export_id``) whose check passed, tables never loaded."""
    return WeekFacts(
        week, **{"export_id": export_id, "export_run_id": f"export-{week}", "check_passed": True, **facts}
    )  # type: ignore[arg-type]


def settled(week: str) -> WeekFacts:
    return exported(week, 10, tables_id=20)


def decide(*weeks: WeekFacts) -> tuple[str, Verdict] | None:
    by_week = {facts.week: facts for facts in weeks}
    decision = next_week_to_load(by_week, by_week.__getitem__)
    return None if decision is None else (decision.week, decision.verdict)


def test_nothing_to_do_when_every_week_is_settled_or_never_exported():
    assert decide(settled(W1), WeekFacts(W2), settled(W3)) is None


def test_the_earliest_week_behind_its_export_loads_and_only_it():
    assert decide(settled(W1), exported(W2, 30), exported(W3, 31)) == (W2, Verdict.LOAD)


def test_weeks_are_taken_in_week_order_whatever_order_they_are_given_or_exported_in():
    # W3 exported first (smaller storage id), W2 later: W2 still loads first.
    assert decide(exported(W3, 5), exported(W2, 50)) == (W2, Verdict.LOAD)


def test_a_week_whose_tables_are_older_than_a_new_export_loads_again():
    assert decide(exported(W1, 40, tables_id=20)) == (W1, Verdict.LOAD)


def test_a_running_or_backfill_pending_export_holds_back_the_weeks_after_it():
    assert decide(WeekFacts(W1, export_pending=True), exported(W2, 30)) == (W1, Verdict.WAIT)
    # Even when the week has older tables: its new object comes first.
    assert decide(exported(W1, 10, tables_id=20, export_pending=True), exported(W2, 30)) == (W1, Verdict.WAIT)


def test_a_failed_key_check_holds_back_the_week_and_every_later_week():
    assert decide(exported(W1, 10, check_passed=False), exported(W2, 30)) == (W1, Verdict.WAIT)


def test_a_table_run_in_progress_is_waited_for():
    attempt = TablesAttempt("run-a", storage_id=11, finished=False)
    assert decide(exported(W1, 10, tables_attempt=attempt), exported(W2, 30)) == (W1, Verdict.WAIT)


def test_a_table_run_that_failed_after_the_export_is_not_started_again():
    failed = TablesAttempt("run-a", storage_id=11, finished=True)
    decision = decide_week(exported(W1, 10, tables_attempt=failed))
    assert decision.verdict is Verdict.WAIT
    assert "run-a" in decision.reason and "re-execute" in decision.reason


def test_a_failed_table_run_of_the_exporting_run_itself_counts_as_tried():
    # A run of the export and the tables plans the tables (storage id 9) before it exports (10).
    same_run = TablesAttempt("export-2024-01-01", storage_id=9, finished=True)
    assert decide_week(exported(W1, 10, tables_attempt=same_run)).verdict is Verdict.WAIT


def test_a_failed_table_run_before_a_new_export_does_not_hold_the_new_export_back():
    earlier = TablesAttempt("run-old", storage_id=5, finished=True)
    assert decide_week(exported(W1, 10, tables_attempt=earlier)).verdict is Verdict.LOAD


@pytest.mark.parametrize("tables_id", [None, 20])
def test_only_weeks_up_to_the_first_unsettled_one_are_looked_at(tables_id: int | None):
    asked: list[str] = []
    weeks = {W1: exported(W1, 10, tables_id=tables_id), W2: exported(W2, 30), W3: settled(W3)}

    def facts_of(week: str) -> WeekFacts:
        asked.append(week)
        return weeks[week]

    decision = next_week_to_load(weeks, facts_of)
    assert decision is not None
    assert asked == ([W1] if tables_id is None else [W1, W2])
