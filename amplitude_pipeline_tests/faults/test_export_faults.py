"""The Export API misbehaving (issue 9): 429s with ``Retry-After``, 500s, a response that stalls past
the client's read timeout, a truncated zip. Faults that clear within the client's retries: the
week's object is byte for byte a fault-free export's. A fault that outlasts them: the run fails
saying which day and why, and the week's key holds nothing (a first export) or the previous
object, unchanged (a re-export) — never a corrupt object."""

import logging
import re
from dataclasses import replace

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.amplitude.support import final_error_text, step_retries
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    WEEK,
    amplitude_resource,
    failure_metadata,
    materializations,
    object_bytes,
    simulator,
)
from amplitude_simulator import Fault, SimulatorConfig, SimulatorServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READ_TIMEOUT_SECONDS = 0.5
STALLED = Fault.slow(2.0)  # no byte of an answer before the client's read timeout
SERVED = Fault.slow(0)  # answered normally; keeps the faults queued behind it for a later request
ATTEMPTS = 2  # the client's, per day, when a fault is meant to outlast them


def export_week(
    store: RawEventStore, sim: SimulatorServer, instance: DagsterInstance | None = None, **settings: object
) -> ExecuteInProcessResult:
    return materialize(
        [amplitude_events],
        partition_key=WEEK,
        resources={
            "amplitude": amplitude_resource(sim, read_timeout_seconds=READ_TIMEOUT_SECONDS, **settings),
            "raw_event_store": store,
        },
        instance=instance,
        raise_on_error=False,
    )


def warnings(instance: DagsterInstance, result: ExecuteInProcessResult) -> list[str]:
    return [
        entry.user_message for entry in instance.all_logs(result.run_id) if entry.level == logging.WARNING
    ]


def test_transient_faults_of_every_kind_are_retried_and_the_object_equals_a_fault_free_export(
    raw_event_store,
):
    clean_store = RawEventStore(
        raw_event_store.bucket, f"{raw_event_store.prefix}-clean", raw_event_store.client
    )
    instance = DagsterInstance.ephemeral()
    with simulator(SMALL_WEEK) as sim:
        assert export_week(clean_store, sim).success
        sim.add_faults(
            Fault.rate_limited(retry_after=1),  # Monday: 429 "wait a second", then served
            SERVED,
            Fault.server_error(500, count=2),  # Tuesday: 500 twice, then served
            SERVED,
            STALLED,  # Wednesday: silence past the read timeout, then served
            SERVED,
            Fault.truncated_zip(),  # Thursday: half a zip, then served (so is the rest of the week)
        )
        result = export_week(raw_event_store, sim, instance, max_attempts=4)
        pending = sim.pending_faults

    assert result.success
    assert pending == []
    key = raw_event_store.week_key(WEEK)
    assert object_bytes(raw_event_store, key) == object_bytes(clean_store, clean_store.week_key(WEEK))
    assert materializations(result)["amplitude_events"]["api_requests"] == 7 + 5
    retried = [
        (match.group(1), match.group(2), float(match.group(3)))
        for message in warnings(instance, result)
        if (match := RETRY_WARNING.match(message))
    ]
    assert [(day, error) for day, error, _ in retried] == [
        ("2024-01-08", "AmplitudeTransientError: HTTP 429"),
        ("2024-01-09", "AmplitudeTransientError: HTTP 500"),
        ("2024-01-09", "AmplitudeTransientError: HTTP 500"),
        ("2024-01-10", "AmplitudeTransientError: ReadTimeout"),
        ("2024-01-11", "AmplitudeTransientError: 200 response with an unusable body"),
    ]
    assert retried[0][2] >= 1.0  # Retry-After is a floor for the wait


# "Amplitude export of 2024-01-08 00:00–23:59 UTC: AmplitudeTransientError: HTTP 429; attempt 1 of
# 4 failed, retrying in 1.0 s": the day, the error's start, the wait.
RETRY_WARNING = re.compile(
    r"Amplitude export of (\d{4}-\d{2}-\d{2}) 00:00–23:59 UTC: "
    r"(AmplitudeTransientError: (?:HTTP \d+|ReadTimeout|200 response with an unusable body))"
    r".*; attempt \d of \d failed, retrying in (\d+\.\d) s$",
    re.S,
)

# The fault Thursday's every attempt meets, and how the failure names it.
PERSISTENT_FAULTS = {
    "429": (Fault.rate_limited(retry_after=1), "HTTP 429"),
    "500": (Fault.server_error(500), "HTTP 500"),
    "stalled": (STALLED, "ReadTimeout: "),
    "truncated zip": (Fault.truncated_zip(), "200 response with an unusable body: "),
}


def thursday_fails_every_time(fault: Fault) -> tuple[Fault, ...]:
    """Monday to Wednesday served, then every attempt at Thursday meets ``fault`` — in each of the
    three step attempts that ``amplitude_events``' RetryPolicy makes."""
    return (Fault.slow(0, count=3), replace(fault, count=ATTEMPTS)) * 3


def assert_failed_clearly_on_thursday(
    result: ExecuteInProcessResult, store: RawEventStore, error: str
) -> None:
    assert not result.success
    assert step_retries(result) == 2
    assert (
        f"Amplitude export of 2024-01-11 00:00–23:59 UTC failed after {ATTEMPTS} attempts; "
        f"last error: {error}"
    ) in final_error_text(result)
    assert failure_metadata(result) == {"week": WEEK, "s3_key": store.week_key(WEEK)}
    assert result.get_asset_materialization_events() == []


@pytest.mark.parametrize("fault_kind", PERSISTENT_FAULTS)
def test_a_fault_that_outlasts_the_retries_fails_clearly_and_leaves_no_object(
    raw_event_store, step_retry_delays, fault_kind
):
    fault, error = PERSISTENT_FAULTS[fault_kind]
    with simulator(SMALL_WEEK) as sim:
        sim.add_faults(*thursday_fails_every_time(fault))
        result = export_week(raw_event_store, sim, max_attempts=ATTEMPTS)
        pending = sim.pending_faults

    assert pending == []
    assert_failed_clearly_on_thursday(result, raw_event_store, error)
    assert raw_event_store.stat(raw_event_store.week_key(WEEK)) is None


# Every kind fails through the same path (nothing is uploaded before the week is whole); these two
# are the ones that break a response half-way.
@pytest.mark.parametrize("fault_kind", ["stalled", "truncated zip"])
def test_a_failed_reexport_leaves_the_previous_object_unchanged(
    raw_event_store, step_retry_delays, fault_kind
):
    fault, error = PERSISTENT_FAULTS[fault_kind]
    key = raw_event_store.week_key(WEEK)
    with simulator(SMALL_WEEK) as sim:
        assert export_week(raw_event_store, sim).success
    before, stored = raw_event_store.stat(key), object_bytes(raw_event_store, key)

    changed: SimulatorConfig = replace(SMALL_WEEK, seed=7)  # a re-export would store other bytes
    with simulator(changed) as sim:
        sim.add_faults(*thursday_fails_every_time(fault))
        result = export_week(raw_event_store, sim, max_attempts=ATTEMPTS)

    assert_failed_clearly_on_thursday(result, raw_event_store, error)
    assert raw_event_store.stat(key) == before
    assert object_bytes(raw_event_store, key) == stored
