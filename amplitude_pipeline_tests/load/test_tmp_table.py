"""Migration of tmp_user_properties against the real PostgreSQL (CONTRACT §6, §7)."""

import threading

import pytest
from sqlalchemy import func, select, update

from amplitude_pipeline.load.event_files import load_event_file
from amplitude_pipeline.load.tmp_table import TmpRowMigrationError, migrate_tmp_user_properties
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import forbid_city, migrated_flags, rows, seed, tmp_row

pytestmark = pytest.mark.integration


def test_twelve_thousand_and_one_rows_migrate_in_three_pages(dwh):
    source = [
        tmp_row(i, ehr_id=f"E{i % 3000}", amplitude_id=i % 3000, city=f"c{i}", age=str(20 + i % 50))
        for i in range(12_001)
    ]
    seed(dwh, source)
    result = migrate_tmp_user_properties(dwh, page_size=5000)
    assert (result.pages, result.rows_migrated) == (3, 12_001)
    assert dwh.tmp_backlog().unmigrated_rows == 0
    changeable = rows(dwh, "changeable")
    assert len(changeable) == 3000
    latest = {row["user_properties"]["ehr_id"]: row for row in source}
    for row in changeable:
        expected = latest[row["ehr_id"]]
        assert (row["city"], row["age"], row["uuid"]) == (
            expected["user_properties"]["city"],
            int(expected["user_properties"]["age"]),
            expected["uuid"],
        )
    assert len(rows(dwh, "permanent")) == 3000


def test_a_bad_row_in_page_two_commits_the_rows_before_it_and_a_rerun_finishes(dwh):
    source = [tmp_row(i, ehr_id=f"E{i}") for i in range(250)]
    bad = source[150]
    bad["user_properties"]["age"] = "unknown"
    seed(dwh, source)

    with pytest.raises(TmpRowMigrationError) as failure:
        migrate_tmp_user_properties(dwh, page_size=100)
    assert failure.value.metadata["uuid"] == bad["uuid"]
    assert failure.value.metadata["rows_migrated"] == 150
    assert "age" in failure.value.metadata["error_message"]
    flags = migrated_flags(dwh)
    assert [flags[row["uuid"]] for row in source] == [True] * 150 + [False] * 100
    assert len(rows(dwh, "changeable")) == 150

    tmp = dwh.tables.tmp
    fixed_properties = {**bad["user_properties"], "age": "41"}
    with dwh.engine.begin() as conn:
        conn.execute(update(tmp).where(tmp.c.uuid == bad["uuid"]).values(user_properties=fixed_properties))
    rerun = migrate_tmp_user_properties(dwh, page_size=100)
    assert rerun.rows_migrated == 100
    assert all(migrated_flags(dwh).values())
    assert len(rows(dwh, "changeable")) == 250


def test_two_concurrent_migrations_take_every_row_exactly_once(dwh):
    seed(dwh, [tmp_row(i, ehr_id=f"E{i}") for i in range(4000)])
    results = []
    errors = []

    def run() -> None:
        try:
            results.append(migrate_tmp_user_properties(dwh, page_size=250))
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(result.rows_migrated for result in results) == 4000
    assert sum(result.changeable.inserted for result in results) == 4000
    with dwh.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dwh.tables.changeable)).scalar_one() == 4000


def _interleaved_sources():
    tmp_rows = [
        tmp_row(0, ehr_id="E1", city="tmp-early", gender="ж"),
        tmp_row(300, ehr_id="E1", city="tmp-late", gender="ж"),
        tmp_row(100, ehr_id="E2", amplitude_id=2, city="tmp-only-early"),
    ]
    events = [
        event("2024-01-08 00:02:00", ehr_id="E1", city="s3-middle", gender="ж"),
        event("2024-01-08 00:10:00", ehr_id="E2", amplitude_id=2, city="s3-latest"),
    ]
    return tmp_rows, events


@pytest.mark.parametrize("tmp_first", [True, False], ids=["tmp-then-s3", "s3-then-tmp"])
def test_sources_interleave_by_event_time_whichever_loads_first(dwh, raw_event_store, tmp_first):
    tmp_rows, events = _interleaved_sources()
    seed(dwh, tmp_rows)
    key = upload_events(raw_event_store, "week.jsonl.gz", events)
    steps = [lambda: migrate_tmp_user_properties(dwh), lambda: load_event_file(dwh, raw_event_store, key)]
    for step in steps if tmp_first else reversed(steps):
        step()
    changeable = {row["ehr_id"]: row["city"] for row in rows(dwh, "changeable")}
    assert changeable == {"E1": "tmp-late", "E2": "s3-latest"}
    permanent = {row["ehr_id"]: row["gender"] for row in rows(dwh, "permanent")}
    assert permanent == {"E1": "female", "E2": "female"}


def test_a_row_the_database_refuses_commits_the_rows_before_it_and_is_named(dwh):
    """Issue 9, item 3: the database's refusal of one row is traced to that row."""
    source = [tmp_row(i, ehr_id=f"E{i}", city=f"c{i}") for i in range(30)]
    bad = source[17]
    bad["user_properties"]["city"] = "Атлантида"
    seed(dwh, source)
    forbid_city(dwh, "Атлантида")

    with pytest.raises(TmpRowMigrationError) as failure:
        migrate_tmp_user_properties(dwh, page_size=10)

    assert failure.value.metadata["uuid"] == bad["uuid"]
    assert failure.value.metadata["rows_migrated"] == 17
    assert "city_allowed" in failure.value.metadata["error_message"]
    flags = migrated_flags(dwh)
    assert [flags[row["uuid"]] for row in source] == [True] * 17 + [False] * 13
    assert {row["ehr_id"] for row in rows(dwh, "changeable")} == {f"E{i}" for i in range(17)}
