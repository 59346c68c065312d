"""Two neighbouring weeks load at once over the same users (issue 9): no deadlock, and the tables
equal a serial load's."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text

from amplitude_pipeline.load.event_files import load_event_file
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.support import stack_dwh, stack_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 50
ROUNDS = 200


def week_events(day: int, ascending: bool) -> list[dict[str, Any]]:
    """Every batch of ``USERS`` lines holds every user, in ascending or descending order, so that
    two loads write the same rows in opposite orders; permanent facts agree across weeks."""
    order = range(USERS) if ascending else range(USERS - 1, -1, -1)
    return [
        event(
            f"2024-01-{day + round_ // 10:02d} {round_ % 10:02d}:{user:02d}:00",
            ehr_id=f"E{user}",
            amplitude_id=user,
            city=f"city-{day}-{round_}",
            gender="м" if user % 2 else "ж",
        )
        for round_ in range(ROUNDS)
        for user in order
    ]


def deadlocks(dwh: DWHRepository) -> int:
    with dwh.engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return conn.execute(
            text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()


def facts(dwh: DWHRepository) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k not in ("uuid", "event_time")} for row in rows(dwh, "permanent")
    ]


def load_in_process(url: str, schema: str, prefix: str, key: str) -> int:
    return load_event_file(stack_dwh(schema, url=url), stack_store(prefix), key, batch_size=USERS).records


@pytest.mark.timeout(300)
def test_neighbouring_weeks_loading_at_once_never_deadlock_and_equal_a_serial_load(raw_event_store, new_dwh):
    first = upload_events(raw_event_store, "2024-01-01.jsonl.gz", week_events(1, ascending=True))
    second = upload_events(raw_event_store, "2024-01-08.jsonl.gz", week_events(8, ascending=False))
    concurrent, serial = new_dwh(), new_dwh()
    for key in (first, second):
        load_event_file(serial, raw_event_store, key, batch_size=100_000)

    deadlocks_before = deadlocks(concurrent)
    # Each load in a process of its own, as Dagster runs them: both merge at the same moments.
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        loads = [
            pool.submit(load_in_process, concurrent.url, concurrent.db_schema, raw_event_store.prefix, key)
            for key in (first, second)
        ]
        errors = [str(load.exception()) for load in loads if load.exception() is not None]

    assert errors == []
    assert deadlocks(concurrent) == deadlocks_before
    assert rows(concurrent, "changeable") == rows(serial, "changeable")
    # Permanent rows: the facts agree; which week's record set uuid/event_time is whichever loaded
    # first (CONTRACT §6), so only the facts are compared.
    assert facts(concurrent) == facts(serial)
