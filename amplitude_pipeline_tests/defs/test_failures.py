"""How a stopped load ends its step (issue 9: "Dagster retries for what is left; data errors are
never retried"): bad data fails at once; an outage beyond the in-process retries is retried by
Dagster and resumes after the checkpoint; an unexpected error is not retried."""

from typing import Any

import psycopg
import pytest
from dagster import DagsterEventType, ExecuteInProcessResult, materialize

from amplitude_pipeline.defs import failures
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import WEEK, failure_metadata
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import fail_a_batch_write, rows
from amplitude_pipeline_tests.support import pipeline_resources

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def no_wait_between_step_retries(monkeypatch) -> None:
    monkeypatch.setattr(failures, "DWH_LOAD_FIRST_RETRY_SECONDS", 0)


def week_of(store: RawEventStore, events: list[dict[str, Any]]) -> None:
    upload_events(store, f"{WEEK}.jsonl.gz", events)


def load_week(store: RawEventStore, dwh: DWHRepository, batch_size: int = 2) -> ExecuteInProcessResult:
    return materialize(
        [user_properties_tables],
        partition_key=WEEK,
        resources=pipeline_resources(store=store, dwh=dwh),
        run_config={"ops": {"user_properties_tables": {"config": {"batch_size": batch_size}}}},
        raise_on_error=False,
    )


def step_attempts(result: ExecuteInProcessResult) -> int:
    return 1 + sum(event.event_type == DagsterEventType.STEP_RESTARTED for event in result.all_events)


def events(count: int) -> list[dict[str, Any]]:
    return [event(f"2024-01-08 10:00:{i:02d}", ehr_id=f"E{i}") for i in range(count)]


def test_bad_data_fails_at_once_and_is_not_retried(raw_event_store, dwh):
    bad = events(6)
    bad[3]["user_properties"]["mood"] = "calm"
    week_of(raw_event_store, bad)
    result = load_week(raw_event_store, dwh)
    assert not result.success
    assert step_attempts(result) == 1
    assert failure_metadata(result)["failed_line"] == 3


def test_a_dwh_outage_beyond_the_retries_is_retried_and_resumes_after_the_checkpoint(
    raw_event_store, dwh, monkeypatch
):
    week_of(raw_event_store, events(6))
    calls = fail_a_batch_write(
        monkeypatch, psycopg.errors.InsufficientPrivilege("the DWH refused this connection's writes for now")
    )
    result = load_week(raw_event_store, dwh)

    assert result.success
    assert step_attempts(result) == 2
    assert calls == [2, 2, 2, 2]  # the second attempt starts after line 1, the first batch's checkpoint
    assert len(rows(dwh, "changeable")) == 6


def test_an_unexpected_error_is_not_retried(raw_event_store, dwh, monkeypatch):
    week_of(raw_event_store, events(2))

    def broken(self, conn, batch):
        raise KeyError("a bug")

    monkeypatch.setattr(DWHRepository, "write_batch", broken)
    result = load_week(raw_event_store, dwh)
    assert not result.success
    assert step_attempts(result) == 1
