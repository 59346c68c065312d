"""``user_properties_keys_known``: the blocking audit of a week's object (CONTRACT §5, §7)."""

from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    instance_for_test,
    materialize,
)
from sqlalchemy import inspect

from amplitude_pipeline.defs.amplitude.assets import amplitude_events
from amplitude_pipeline.defs.amplitude.checks import user_properties_keys_known
from amplitude_pipeline.defs.partitions import weekly_partitions
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.storage.dwh import PERMANENT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import (
    SMALL_WEEK,
    WEEK,
    amplitude_resource,
    mappings_without,
    materializations,
    simulator,
    unused_amplitude_resource,
    values,
)
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.mapping.support import merge_snippet
from amplitude_pipeline_tests.support import NewDWH, pipeline_resources

pytestmark = pytest.mark.integration


def run_check_only(
    store: RawEventStore, dwh: DWHRepository, week: str = WEEK, instance: DagsterInstance | None = None
) -> ExecuteInProcessResult:
    """Execute just the check for ``week``, the way the UI's "Execute check" does."""
    defs = Definitions(
        assets=[amplitude_events],
        asset_checks=[user_properties_keys_known],
        resources={
            "amplitude": unused_amplitude_resource(),
            "raw_event_store": store,
            "dwh": dwh,
            "field_mappings": dwh.mappings,
        },
    )
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={user_properties_keys_known.check_key}
    )
    return job.execute_in_process(partition_key=week, instance=instance, raise_on_error=False)


def weeks_by_status(instance: DagsterInstance) -> dict[str, set[str]]:
    """The check's result per week as the UI's partition view reads it (Dagster's AssetCheckState)."""
    key = user_properties_keys_known.check_key
    state = instance.event_log_storage.get_asset_check_state([(key, weekly_partitions)])[key]
    found = {status.value: set(subset.value.get_partition_keys()) for status, subset in state.subsets.items()}
    return {status: weeks for status, weeks in found.items() if weeks}


def test_the_check_lists_every_unknown_key_and_bad_value_of_the_week(raw_event_store, dwh):
    upload_events(
        raw_event_store,
        f"{WEEK}.jsonl.gz",
        [
            event("2024-01-08 09:00:00", ehr_id="E1"),
            event("2024-01-08 10:00:00", ehr_id="E2", favourite_colour="blue"),
            event("2024-01-08 11:00:00", ehr_id="E3", shoe_size=42),
            event("2024-01-08 12:00:00", ehr_id="E4", favourite_colour="green"),
            event("2024-01-08 13:00:00", ehr_id="E5", premium="sometimes"),
        ],
    )

    result = run_check_only(raw_event_store, dwh)

    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == user_properties_keys_known.check_key
    assert evaluation.passed is False
    assert evaluation.severity == AssetCheckSeverity.ERROR
    # The week it judged: its own partition, in the metadata and first in the description.
    assert evaluation.partition == WEEK
    assert evaluation.description is not None
    assert evaluation.description.startswith(
        f"Week {WEEK} ({raw_event_store.uri(raw_event_store.week_key(WEEK))}): "
    )
    assert "2 unknown keys" in evaluation.description
    metadata = values(dict(evaluation.metadata))
    assert metadata["week"] == WEEK
    assert metadata["file_key"] == raw_event_store.week_key(WEEK)
    assert (metadata["lines_scanned"], metadata["unknown_keys"], metadata["conversion_failures"]) == (5, 2, 1)
    assert metadata["unknown_key_details"] == [
        {"key": "favourite_colour", "count": 2, "first_line": 1, "example": "'blue'"},
        {"key": "shoe_size", "count": 1, "first_line": 2, "example": "42"},
    ]
    [bad_value] = metadata["conversion_failure_details"]
    assert {k: bad_value[k] for k in ("key", "column", "type", "count", "first_line", "example")} == {
        "key": "premium",
        "column": "changeable.is_premium",
        "type": "bool",
        "count": 1,
        "first_line": 4,
        "example": "'sometimes'",
    }
    for text in ("favourite_colour", "shoe_size", "premium", "'sometimes'"):
        assert text in metadata["findings"]
    # Blocking with ERROR severity: the check's own step fails the run.
    assert not result.success


def test_the_check_passes_on_a_clean_week(raw_event_store, dwh):
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", [event("2024-01-08 09:00:00", ehr_id="E1")])

    result = run_check_only(raw_event_store, dwh)

    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed is True
    assert evaluation.partition == WEEK
    assert evaluation.description is not None
    assert evaluation.description.startswith(f"Week {WEEK} (")
    assert values(dict(evaluation.metadata))["week"] == WEEK
    assert values(dict(evaluation.metadata))["unknown_key_details"] == []


def test_each_week_keeps_its_own_result_and_a_fixed_week_turns_green(
    raw_event_store, new_dwh: NewDWH, tmp_path: Path
):
    older, newer = "2024-01-01", WEEK
    for week in (older, newer):
        upload_events(raw_event_store, f"{week}.jsonl.gz", [event(f"{week} 09:00:00", ehr_id="E1")])
    # The events carry `city`; a mapping without it fails whichever week it judges.
    without_city = mappings_without(tmp_path / "field_mappings.yaml", "  city: {type: str}")
    broken = new_dwh(without_city, create=False)
    fixed = new_dwh(schema=broken.db_schema, create=False)
    with instance_for_test() as instance:
        run_check_only(raw_event_store, broken, older, instance)
        run_check_only(raw_event_store, fixed, newer, instance)
        # The newer week passing does not hide the older week's failure.
        assert weeks_by_status(instance) == {"FAILED": {older}, "SUCCEEDED": {newer}}

        run_check_only(raw_event_store, broken, newer, instance)
        assert weeks_by_status(instance) == {"FAILED": {older, newer}}

        # The mapping fixed and each week re-run: each turns green, nothing stays red.
        run_check_only(raw_event_store, fixed, newer, instance)
        assert weeks_by_status(instance) == {"FAILED": {older}, "SUCCEEDED": {newer}}
        result = run_check_only(raw_event_store, fixed, older, instance)
        assert result.success
        assert weeks_by_status(instance) == {"SUCCEEDED": {older, newer}}
        # The asset's summary (the latest evaluation) names the week it judged.
        latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [user_properties_keys_known.check_key]
        )[user_properties_keys_known.check_key]
        assert (latest.partition, latest.status.value) == (older, "SUCCEEDED")


def test_a_failing_check_blocks_the_table_assets_of_the_same_run(
    raw_event_store, new_dwh: NewDWH, tmp_path: Path
):
    # The simulator's events carry `city`; a mapping without it makes the week fail the audit.
    dwh = new_dwh(mappings_without(tmp_path / "field_mappings.yaml", "  city: {type: str}"), create=False)
    with simulator(SMALL_WEEK) as sim:
        result = materialize(
            [amplitude_events, user_properties_tables, user_properties_keys_known],
            partition_key=WEEK,
            resources=pipeline_resources(store=raw_event_store, dwh=dwh, amplitude=amplitude_resource(sim)),
            raise_on_error=False,
        )

        assert not result.success
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.passed is False
        assert [item["key"] for item in values(dict(evaluation.metadata))["unknown_key_details"]] == ["city"]
        assert set(materializations(result)) == {"amplitude_events"}
        assert raw_event_store.stat(raw_event_store.week_key(WEEK)) is not None
        assert result.is_node_untouched("user_properties_tables")
        # The tables' step never ran: it did not even create the tables in this fresh schema.
        assert not inspect(dwh.engine).has_table(PERMANENT_TABLE, schema=dwh.db_schema)


def test_a_failed_checks_snippet_pasted_into_the_mapping_makes_the_week_load(
    raw_event_store, new_dwh: NewDWH, tmp_path: Path
):
    # The simulator's events carry `city`; the mapping lacks it: the week fails its check.
    lacking = mappings_without(tmp_path / "field_mappings.yaml", "  city: {type: str}")
    broken = new_dwh(lacking)
    with simulator(SMALL_WEEK) as sim:
        exported = materialize(
            [amplitude_events, user_properties_keys_known],
            partition_key=WEEK,
            resources=pipeline_resources(
                store=raw_event_store, dwh=broken, amplitude=amplitude_resource(sim)
            ),
            raise_on_error=False,
        )
    [evaluation] = exported.get_asset_check_evaluations()
    assert not evaluation.passed
    shown = metadata(evaluation)["mapping_snippet"]
    snippet = shown.split("```yaml\n", 1)[1].rsplit("```", 1)[0]
    assert "city" in snippet

    fixed_path = tmp_path / "fixed.yaml"
    fixed_path.write_text(merge_snippet(lacking.read_text(encoding="utf-8"), snippet), encoding="utf-8")
    fixed = new_dwh(fixed_path, schema=broken.db_schema)
    loaded = materialize(
        [user_properties_tables],
        partition_key=WEEK,
        resources=pipeline_resources(store=raw_event_store, dwh=fixed),
    )
    assert loaded.success
    assert rows(fixed, "changeable")
    assert {row["city"] for row in rows(fixed, "changeable")} - {None}


def test_a_passing_check_carries_no_snippet(raw_event_store, dwh):
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", [event(f"{WEEK} 09:00:00", ehr_id="E1")])
    with instance_for_test() as instance:
        result = run_check_only(raw_event_store, dwh, WEEK, instance)
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert "mapping_snippet" not in metadata(evaluation)


def metadata(evaluation: AssetCheckEvaluation) -> dict[str, Any]:
    return values(dict(evaluation.metadata))
