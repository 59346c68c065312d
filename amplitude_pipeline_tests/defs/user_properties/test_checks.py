"""``user_properties_tables_checks``: identity unique, no event_time in the future, row count never
shrinks, on both tables, after each load (same run) and on their own."""

import gzip
from collections.abc import Iterator
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    RunConfig,
    instance_for_test,
    materialize,
)
from sqlalchemy import text

from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.defs.user_properties.checks import (
    ALL_TABLE_CHECKS,
    EVENT_TIME_NOT_IN_FUTURE,
    IDENTITY_UNIQUE,
    ROW_COUNT_NEVER_SHRINKS,
    user_properties_tables_checks,
)
from amplitude_pipeline.defs.user_properties.jobs import (
    LoadS3EventFilesConfig,
    S3EventFile,
    load_s3_event_files,
    load_s3_event_files_op,
)
from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, TMP_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import WEEK, values
from amplitude_pipeline_tests.defs.tmp_user_properties.support import five_rows, run_migration
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import seed
from amplitude_pipeline_tests.support import pipeline_resources

pytestmark = pytest.mark.integration

NEXT_WEEK = "2024-01-15"
CHECK_NAMES = (IDENTITY_UNIQUE, EVENT_TIME_NOT_IN_FUTURE, ROW_COUNT_NEVER_SHRINKS)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


def upload_week(store: RawEventStore, week: str) -> None:
    """Two known users and one anonymous user (amplitude_id only), all in ``week``."""
    upload_events(
        store,
        f"{week}.jsonl.gz",
        [
            event(f"{week} 09:00:00", ehr_id="E1", amplitude_id=11),
            event(f"{week} 10:00:00", ehr_id="E2", amplitude_id=12, city="Казань"),
            event(f"{week} 11:00:00", amplitude_id=13),
        ],
    )


def load_week(
    store: RawEventStore, dwh: DWHRepository, instance: DagsterInstance, week: str
) -> ExecuteInProcessResult:
    """The week's tables and, riding along in the same run, their checks."""
    return materialize(
        [user_properties_tables, user_properties_tables_checks],
        partition_key=week,
        instance=instance,
        resources=pipeline_resources(store=store, dwh=dwh),
    )


def run_s3_files(
    store: RawEventStore, dwh: DWHRepository, instance: DagsterInstance, keys: list[str]
) -> ExecuteInProcessResult:
    """The S3 sensor's job over ``keys``, in a code location that has the tables and their checks."""
    defs = Definitions(
        assets=[user_properties_tables],
        asset_checks=[user_properties_tables_checks],
        jobs=[load_s3_event_files],
        resources=pipeline_resources(store=store, dwh=dwh),
    )
    config = LoadS3EventFilesConfig(files=[S3EventFile(key=key) for key in keys])
    return defs.resolve_job_def(load_s3_event_files.name).execute_in_process(
        run_config=RunConfig(ops={load_s3_event_files_op.name: config}),
        instance=instance,
        raise_on_error=False,
    )


def run_checks_only(
    store: RawEventStore, dwh: DWHRepository, instance: DagsterInstance, *check_keys: AssetCheckKey
) -> ExecuteInProcessResult:
    """Execute checks without a load, the way the UI's "Execute checks" does."""
    defs = Definitions(
        assets=[user_properties_tables],
        asset_checks=[user_properties_tables_checks],
        resources=pipeline_resources(store=store, dwh=dwh),
    )
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection=set(check_keys)
    )
    # Partitioned like the tables: the UI asks for a week; the checks judge the whole table anyway.
    return job.execute_in_process(instance=instance, partition_key=WEEK)


def evaluations(result: ExecuteInProcessResult) -> dict[tuple[str, str], AssetCheckEvaluation]:
    found = {
        (evaluation.asset_key.to_user_string(), evaluation.check_name): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }
    assert len(found) == len(result.get_asset_check_evaluations())
    return found


def check_key(table: str, name: str) -> AssetCheckKey:
    return AssetCheckKey.from_user_string(f"{table}:{name}")


def execute_sql(dwh: DWHRepository, *statements: str) -> None:
    with dwh.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement.replace("{schema}", f'"{dwh.db_schema}"')))


def metadata(evaluation: AssetCheckEvaluation) -> dict[str, Any]:
    return values(dict(evaluation.metadata))


def test_every_check_runs_after_the_load_passes_on_good_tables_and_names_the_week(
    raw_event_store, dwh, instance
):
    upload_week(raw_event_store, WEEK)

    result = load_week(raw_event_store, dwh, instance, WEEK)

    found = evaluations(result)
    assert set(found) == {
        (table, name) for table in (PERMANENT_TABLE, CHANGEABLE_TABLE) for name in CHECK_NAMES
    }
    for (table, _), evaluation in found.items():
        assert evaluation.passed, evaluation.description
        assert evaluation.severity == AssetCheckSeverity.ERROR
        assert metadata(evaluation)["week"] == WEEK
        assert evaluation.description is not None
        assert evaluation.description.startswith(f"{table} after the load of week {WEEK}: ")
    assert metadata(found[(CHANGEABLE_TABLE, IDENTITY_UNIQUE)])["duplicated_amplitude_id"] == 0
    assert metadata(found[(PERMANENT_TABLE, ROW_COUNT_NEVER_SHRINKS)])["row_count"] == 2
    assert metadata(found[(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS)])["row_count"] == 3


def test_identity_unique_fails_on_a_duplicated_identity_or_a_row_without_one(raw_event_store, dwh, instance):
    upload_week(raw_event_store, WEEK)
    load_week(raw_event_store, dwh, instance, WEEK)
    # What the constraints prevent, once someone has dropped them: a second row for E1 in both
    # tables, a second row for the anonymous amplitude_id 13, and a changeable row with no identity.
    execute_sql(
        dwh,
        f"ALTER TABLE {{schema}}.{PERMANENT_TABLE} DROP CONSTRAINT {PERMANENT_TABLE}_pkey",
        f"DROP INDEX {{schema}}.{CHANGEABLE_TABLE}_ehr_id_key",
        f"DROP INDEX {{schema}}.{CHANGEABLE_TABLE}_amplitude_id_key",
        f"INSERT INTO {{schema}}.{PERMANENT_TABLE} SELECT * FROM {{schema}}.{PERMANENT_TABLE} WHERE ehr_id = 'E1'",
        f"INSERT INTO {{schema}}.{CHANGEABLE_TABLE} SELECT * FROM {{schema}}.{CHANGEABLE_TABLE}"
        " WHERE ehr_id = 'E1' OR amplitude_id = 13",
        f"INSERT INTO {{schema}}.{CHANGEABLE_TABLE} (uuid, event_time)"
        " VALUES ('00000000-0000-0000-0000-000000000001', '2024-01-08 12:00:00+00')",
    )

    result = run_checks_only(
        raw_event_store,
        dwh,
        instance,
        check_key(PERMANENT_TABLE, IDENTITY_UNIQUE),
        check_key(CHANGEABLE_TABLE, IDENTITY_UNIQUE),
    )

    found = evaluations(result)
    permanent = found[(PERMANENT_TABLE, IDENTITY_UNIQUE)]
    assert permanent.passed is False
    assert permanent.severity == AssetCheckSeverity.ERROR
    assert metadata(permanent)["duplicated_ehr_id"] == 1
    assert metadata(permanent)["duplicated_ehr_id_examples"] == [{"identity": "'E1'", "rows": 2}]
    assert metadata(permanent)["rows_without_identity"] == 0
    assert permanent.description == f"{PERMANENT_TABLE}: 1 ehr_id value(s) on more than one row"
    # Executed on its own, the check follows no week's load and says none.
    assert "week" not in metadata(permanent)

    changeable = found[(CHANGEABLE_TABLE, IDENTITY_UNIQUE)]
    assert changeable.passed is False
    assert {
        key: metadata(changeable)[key] for key in metadata(changeable) if key.startswith(("dup", "rows"))
    } == {
        "duplicated_ehr_id": 1,
        "duplicated_ehr_id_examples": [{"identity": "'E1'", "rows": 2}],
        "duplicated_amplitude_id": 1,
        "duplicated_amplitude_id_examples": [{"identity": "13", "rows": 2}],
        "rows_without_identity": 1,
    }
    assert changeable.description == (
        f"{CHANGEABLE_TABLE}: 1 ehr_id value(s) on more than one row; 1 amplitude_id value(s) on more "
        "than one row; 1 row(s) without identity"
    )


def test_event_time_in_the_future_fails_beyond_the_clock_skew_tolerance(raw_event_store, dwh, instance):
    upload_week(raw_event_store, WEEK)
    load_week(raw_event_store, dwh, instance, WEEK)
    keys = (
        check_key(PERMANENT_TABLE, EVENT_TIME_NOT_IN_FUTURE),
        check_key(CHANGEABLE_TABLE, EVENT_TIME_NOT_IN_FUTURE),
    )

    # A minute ahead is a clock's skew, not a problem.
    execute_sql(dwh, f"UPDATE {{schema}}.{PERMANENT_TABLE} SET event_time = now() + interval '1 minute'")
    within_tolerance = evaluations(run_checks_only(raw_event_store, dwh, instance, *keys))
    assert within_tolerance[(PERMANENT_TABLE, EVENT_TIME_NOT_IN_FUTURE)].passed is True

    execute_sql(
        dwh,
        f"UPDATE {{schema}}.{PERMANENT_TABLE} SET event_time = now() + interval '1 day' WHERE ehr_id = 'E2'",
        f"UPDATE {{schema}}.{CHANGEABLE_TABLE} SET event_time = '2100-01-01 00:00:00+00' WHERE amplitude_id = 13",
    )
    found = evaluations(run_checks_only(raw_event_store, dwh, instance, *keys))

    permanent = found[(PERMANENT_TABLE, EVENT_TIME_NOT_IN_FUTURE)]
    assert permanent.passed is False
    assert metadata(permanent)["rows_in_future"] == 1
    [example] = metadata(permanent)["examples"]
    assert example["ehr_id"] == "'E2'"
    changeable = found[(CHANGEABLE_TABLE, EVENT_TIME_NOT_IN_FUTURE)]
    assert changeable.passed is False
    assert metadata(changeable)["latest_event_time"] == "2100-01-01T00:00:00+00:00"
    [example] = metadata(changeable)["examples"]
    assert (example["ehr_id"], example["amplitude_id"], example["event_time"]) == (
        "None",
        "13",
        "2100-01-01T00:00:00+00:00",
    )
    assert changeable.description is not None
    assert "1 row(s) with event_time after" in changeable.description
    assert "the latest 2100-01-01T00:00:00+00:00" in changeable.description


def test_row_count_shrinking_since_the_last_materialization_fails_naming_both_weeks(
    raw_event_store, dwh, instance
):
    upload_week(raw_event_store, WEEK)
    first = load_week(raw_event_store, dwh, instance, WEEK)
    # Someone deletes the anonymous user's row; the next week holds only the two known users, so
    # its load adds no row and the table ends smaller than the first load left it.
    execute_sql(dwh, f"DELETE FROM {{schema}}.{CHANGEABLE_TABLE} WHERE amplitude_id = 13")
    upload_events(
        raw_event_store,
        f"{NEXT_WEEK}.jsonl.gz",
        [event(f"{NEXT_WEEK} 09:00:00", ehr_id="E1", amplitude_id=11, city="Сочи")],
    )

    second = load_week(raw_event_store, dwh, instance, NEXT_WEEK)

    assert second.success  # a failed check is not a failed load
    found = evaluations(second)
    shrunk = found[(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS)]
    assert shrunk.passed is False
    assert {
        key: metadata(shrunk)[key] for key in ("week", "row_count", "previous_row_count", "difference")
    } == {
        "week": NEXT_WEEK,
        "row_count": 2,
        "previous_row_count": 3,
        "difference": -1,
    }
    assert (metadata(shrunk)["previous_run_id"], metadata(shrunk)["previous_partition"]) == (
        first.run_id,
        WEEK,
    )
    assert shrunk.description == (
        f"{CHANGEABLE_TABLE} after the load of week {NEXT_WEEK}: 2 rows, 1 fewer than the 3 recorded by "
        f"run {first.run_id} (week {WEEK}): rows were deleted"
    )
    # The other table lost nothing.
    assert found[(PERMANENT_TABLE, ROW_COUNT_NEVER_SHRINKS)].passed is True
    assert metadata(found[(PERMANENT_TABLE, ROW_COUNT_NEVER_SHRINKS)])["difference"] == 0

    # Executed on its own, it compares with the latest materialization (the second load's 2 rows).
    again = evaluations(
        run_checks_only(raw_event_store, dwh, instance, check_key(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS))
    )
    assert again[(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS)].passed is True
    execute_sql(dwh, f"DELETE FROM {{schema}}.{CHANGEABLE_TABLE} WHERE ehr_id = 'E2'")
    after_delete = evaluations(
        run_checks_only(raw_event_store, dwh, instance, check_key(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS))
    )
    evaluation = after_delete[(CHANGEABLE_TABLE, ROW_COUNT_NEVER_SHRINKS)]
    assert evaluation.passed is False
    assert (metadata(evaluation)["row_count"], metadata(evaluation)["previous_row_count"]) == (1, 2)
    assert metadata(evaluation)["previous_run_id"] == second.run_id


def test_the_first_materialization_has_nothing_to_compare_with(raw_event_store, dwh, instance):
    upload_week(raw_event_store, WEEK)

    found = evaluations(load_week(raw_event_store, dwh, instance, WEEK))

    evaluation = found[(PERMANENT_TABLE, ROW_COUNT_NEVER_SHRINKS)]
    assert evaluation.passed is True
    assert "previous_row_count" not in metadata(evaluation)
    assert evaluation.description == (
        f"{PERMANENT_TABLE} after the load of week {WEEK}: 2 rows; no earlier materialization to compare with"
    )


def check_history(instance: DagsterInstance) -> dict[AssetCheckKey, list[tuple[str, str | None]]]:
    """Every recorded execution of each table check: (status, partition), newest first."""
    return {
        key: [
            (record.status.value, record.partition)
            for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
        ]
        for key in ALL_TABLE_CHECKS
    }


def test_a_weekly_load_records_each_check_once_with_its_week(raw_event_store, dwh, instance):
    upload_week(raw_event_store, WEEK)

    load_week(raw_event_store, dwh, instance, WEEK)

    assert check_history(instance) == {key: [("SUCCEEDED", WEEK)] for key in ALL_TABLE_CHECKS}


def latest_check_runs(instance: DagsterInstance) -> dict[AssetCheckKey, tuple[str, str]]:
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(ALL_TABLE_CHECKS))
    return {key: (record.run_id, record.status.value) for key, record in latest.items()}


def test_the_s3_sensors_job_leaves_every_check_evaluated_after_its_load(raw_event_store, dwh, instance):
    upload_week(raw_event_store, WEEK)
    load_week(raw_event_store, dwh, instance, WEEK)
    key = upload_events(
        raw_event_store, "hourly/2024-01-15_3#0.json.gz", [event("2024-01-15 03:00:00", ehr_id="E9")]
    )

    result = run_s3_files(raw_event_store, dwh, instance, [key])

    assert result.success
    assert latest_check_runs(instance) == {key: (result.run_id, "SUCCEEDED") for key in ALL_TABLE_CHECKS}
    found = evaluations(result)
    identity = found[(PERMANENT_TABLE, IDENTITY_UNIQUE)]
    assert identity.description == f"{PERMANENT_TABLE} after the load of 1 S3 file: one row per ehr_id"
    assert metadata(found[(PERMANENT_TABLE, ROW_COUNT_NEVER_SHRINKS)])["row_count"] == 3


def test_a_failed_s3_job_still_evaluates_the_checks_over_what_it_loaded(raw_event_store, dwh, instance):
    good = upload_events(raw_event_store, "hourly/a.json.gz", [event("2024-01-15 03:00:00", ehr_id="E9")])
    bad = f"{raw_event_store.prefix}/hourly/b.json.gz"
    raw_event_store.client.put_object(
        Bucket=raw_event_store.bucket, Key=bad, Body=gzip.compress(b'{"not json\n')
    )

    result = run_s3_files(raw_event_store, dwh, instance, [good, bad])

    assert not result.success
    assert {status for _, status in latest_check_runs(instance).values()} == {"SUCCEEDED"}
    assert {run_id for run_id, _ in latest_check_runs(instance).values()} == {result.run_id}


def test_the_migration_leaves_every_check_evaluated_and_the_source_observed(dwh, instance):
    seed(dwh, five_rows())

    result = run_migration(dwh, instance, page_size=2)

    assert result.success
    assert latest_check_runs(instance) == {key: (result.run_id, "SUCCEEDED") for key in ALL_TABLE_CHECKS}
    observation = instance.fetch_observations(AssetKey(TMP_TABLE), limit=1).records[0]
    assert observation.run_id == result.run_id
    assert values(dict(observation.asset_observation.metadata)) == {
        "unmigrated_rows": 0,
        "oldest_unmigrated_event_time": "none",
        "table_exists": True,
    }
