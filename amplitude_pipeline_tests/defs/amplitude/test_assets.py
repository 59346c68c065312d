"""``amplitude_events``: one weekly S3 object from the Export API simulator (CONTRACT §4)."""

from dataclasses import replace
from datetime import date

import pytest
from dagster import Backoff, RetryPolicy, materialize

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.amplitude.support import final_error_text, step_retries
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    WEEK,
    amplitude_resource,
    failure_metadata,
    joined_lines,
    materializations,
    object_bytes,
    object_lines_bytes,
    simulator,
)
from amplitude_simulator import Fault, SimulatorConfig, expected_week_lines

pytestmark = pytest.mark.integration

MONDAY = date.fromisoformat(WEEK)
EMPTY_DAY = date(2024, 1, 10)


def materialize_week(
    store: RawEventStore, config: SimulatorConfig, faults: tuple[Fault, ...] = (), **settings
):
    with simulator(config) as sim:
        sim.add_faults(*faults)
        result = materialize(
            [amplitude_events],
            partition_key=WEEK,
            resources={"amplitude": amplitude_resource(sim, **settings), "raw_event_store": store},
            raise_on_error=False,
        )
        return result, sim.requests


def test_the_week_object_holds_exactly_the_served_events_and_the_metadata_describes_it(raw_event_store):
    config = replace(SMALL_WEEK, empty_days={EMPTY_DAY})
    result, requests = materialize_week(raw_event_store, config)

    assert result.success
    key = f"{raw_event_store.prefix}/{WEEK}.jsonl.gz"
    expected = expected_week_lines(config, MONDAY)
    assert object_lines_bytes(raw_event_store, key) == joined_lines(expected)
    assert [(r.start, r.end, r.status) for r in requests] == [
        (f"202401{day:02d}T00", f"202401{day:02d}T23", 404 if day == EMPTY_DAY.day else 200)
        for day in range(8, 15)
    ]

    metadata = materializations(result)["amplitude_events"]
    assert metadata["events"] == len(expected) > 0
    assert metadata["bytes"] == len(object_bytes(raw_event_store, key))
    assert metadata["empty_days"] == ["2024-01-10"]
    assert metadata["s3_uri"] == f"s3://{raw_event_store.bucket}/{key}"
    assert metadata["api_requests"] == 7
    assert isinstance(metadata["duration_seconds"], float)
    assert metadata["duration_seconds"] >= 0
    events = result.get_asset_materialization_events()
    assert [event.partition for event in events] == [WEEK]


def test_rematerializing_the_week_replaces_the_object_whole(raw_event_store):
    first = replace(SMALL_WEEK, seed=1, events_per_day=60)
    second = replace(SMALL_WEEK, seed=2, events_per_day=15, empty_days={EMPTY_DAY})
    key = raw_event_store.week_key(WEEK)

    assert materialize_week(raw_event_store, first)[0].success
    assert object_lines_bytes(raw_event_store, key) == joined_lines(expected_week_lines(first, MONDAY))
    result, _ = materialize_week(raw_event_store, second)

    assert result.success
    assert object_lines_bytes(raw_event_store, key) == joined_lines(expected_week_lines(second, MONDAY))
    assert materializations(result)["amplitude_events"]["events"] == 15 * 6


# Thursday's request (the 4th of the week) fails on every attempt of the client (max_attempts=3);
# Mon-Wed are served normally (a zero-second "slow" fault answers as usual, it only keeps the
# failures queued for day 4). _EVERY_TIME: once per step attempt (the policy runs it three times).
FAIL_ON_THURSDAY = (Fault.slow(0, count=3), Fault.server_error(503, count=3))
FAIL_ON_THURSDAY_EVERY_TIME = FAIL_ON_THURSDAY * 3
ONE_FAILED_STEP = [200, 200, 200, 503, 503, 503]


def test_the_retry_policy_exports_the_week_again_after_5_then_15_minutes():
    policy = amplitude_events.op.retry_policy

    assert policy == RetryPolicy(max_retries=2, delay=300, backoff=Backoff.EXPONENTIAL)
    assert [policy.calculate_delay(attempt) for attempt in (1, 2)] == [300, 900]


def test_an_outage_longer_than_the_clients_retries_is_retried_by_dagster_and_the_week_completes(
    raw_event_store, step_retry_delays
):
    result, requests = materialize_week(raw_event_store, SMALL_WEEK, FAIL_ON_THURSDAY, max_attempts=3)

    assert result.success
    assert (step_retries(result), step_retry_delays) == (1, [1])
    assert [r.status for r in requests] == [*ONE_FAILED_STEP, *[200] * 7]
    key = raw_event_store.week_key(WEEK)
    assert object_lines_bytes(raw_event_store, key) == joined_lines(expected_week_lines(SMALL_WEEK, MONDAY))
    assert materializations(result)["amplitude_events"]["api_requests"] == 7  # the successful attempt's


def test_a_failure_on_day_four_fails_the_run_and_leaves_no_object_under_a_fresh_key(
    raw_event_store, step_retry_delays
):
    result, requests = materialize_week(
        raw_event_store, SMALL_WEEK, FAIL_ON_THURSDAY_EVERY_TIME, max_attempts=3
    )

    assert not result.success
    assert step_retries(result) == 2
    assert [r.status for r in requests] == ONE_FAILED_STEP * 3
    assert {r.start for r in requests if r.status == 503} == {"20240111T00"}
    metadata = failure_metadata(result)
    assert metadata == {"week": WEEK, "s3_key": raw_event_store.week_key(WEEK)}
    error_text = final_error_text(result)
    assert "Exceeded max_retries of 2" in error_text
    assert (
        "Amplitude export of 2024-01-11 00:00–23:59 UTC failed after 3 attempts; last error: HTTP 503"
        in error_text
    )
    assert result.get_asset_materialization_events() == []
    assert raw_event_store.stat(raw_event_store.week_key(WEEK)) is None


def test_a_failed_rematerialization_leaves_the_existing_object_untouched(raw_event_store, step_retry_delays):
    key = raw_event_store.week_key(WEEK)
    assert materialize_week(raw_event_store, SMALL_WEEK)[0].success
    before = raw_event_store.stat(key)
    stored = object_bytes(raw_event_store, key)

    different = replace(SMALL_WEEK, seed=7)
    result, _ = materialize_week(raw_event_store, different, FAIL_ON_THURSDAY_EVERY_TIME, max_attempts=3)

    assert not result.success
    assert step_retries(result) == 2
    assert raw_event_store.stat(key) == before
    assert object_bytes(raw_event_store, key) == stored


def test_wrong_credentials_fail_without_retrying_and_without_an_object(raw_event_store, step_retry_delays):
    with simulator(SMALL_WEEK) as sim:
        result = materialize(
            [amplitude_events],
            partition_key=WEEK,
            resources={
                "amplitude": amplitude_resource(sim, secret_key="wrong-secret"),
                "raw_event_store": raw_event_store,
            },
            raise_on_error=False,
        )
        statuses = [r.status for r in sim.requests]

    assert not result.success
    assert statuses == [401]  # neither the client nor Dagster's retry policy tries again
    assert (step_retries(result), step_retry_delays) == (0, [])
    assert "AMPLITUDE_SECRET_KEY" in final_error_text(result)
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "wrong-secret" not in message
    assert raw_event_store.stat(raw_event_store.week_key(WEEK)) is None
