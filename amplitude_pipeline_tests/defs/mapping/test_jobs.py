"""``propose_field_mappings``: the assistant's ``propose`` as a job, its draft in the run's metadata."""

from datetime import date
from typing import Any

import pytest
from dagster import Definitions, ExecuteInProcessResult, RunConfig

from amplitude_pipeline.defs.mapping.jobs import (
    ProposeFieldMappingsConfig,
    propose_field_mappings,
    propose_field_mappings_op,
)
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.transform.mapping import parse_mapping_text
from amplitude_pipeline_tests.defs.support import values
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.mapping.support import simulator_week
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS, pipeline_resources

pytestmark = pytest.mark.integration


def run_job(store: RawEventStore, **config: Any) -> ExecuteInProcessResult:
    defs = Definitions(
        jobs=[propose_field_mappings],
        resources=pipeline_resources(store=store, field_mappings=load_field_mappings_once(DEFAULT_MAPPINGS)),
    )
    run_config = RunConfig(ops={propose_field_mappings_op.name: ProposeFieldMappingsConfig(**config)})
    return defs.resolve_job_def(propose_field_mappings.name).execute_in_process(
        run_config=run_config, raise_on_error=False
    )


def draft(result: ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    [output] = [event for event in result.all_events if event.event_type_value == "STEP_OUTPUT"]
    metadata = values(dict(output.step_output_data.metadata))
    shown = metadata["mapping"]
    return shown.split("```yaml\n", 1)[1].rsplit("```", 1)[0], metadata


def test_a_weeks_object_gives_a_draft_that_loads_once_the_identity_is_named(raw_event_store, tmp_path):
    week = simulator_week(tmp_path / "2024-01-08.jsonl.gz", date(2024, 1, 8))
    key = f"{raw_event_store.prefix}/2024-01-08.jsonl.gz"
    raw_event_store.client.put_object(Bucket=raw_event_store.bucket, Key=key, Body=week.read_bytes())
    uri = f"s3://{raw_event_store.bucket}/{key}"

    result = run_job(raw_event_store, sources=[uri], identity="ehr_id")

    assert result.success
    yaml_text, metadata = draft(result)
    mappings = parse_mapping_text(yaml_text.encode(), "drafted.yaml")
    assert mappings.identity_key == "ehr_id"
    assert {column.name for column in mappings.changeable} >= {"city", "age"}
    assert metadata["sources"] == [uri]
    assert metadata["records"] > 0 and metadata["samples_shown"] is False


def test_no_value_is_shown_unless_samples_are_asked_for(raw_event_store):
    secret = "Ivanov Ivan Ivanovich"
    upload_events(
        raw_event_store,
        "people.jsonl.gz",
        [event(f"2024-01-08 09:0{i}:00", ehr_id=f"E{i}", full_name=secret) for i in range(3)],
    )
    uri = f"s3://{raw_event_store.bucket}/{raw_event_store.prefix}/people.jsonl.gz"

    hidden, _ = draft(run_job(raw_event_store, sources=[uri]))
    shown, _ = draft(run_job(raw_event_store, sources=[uri], samples=True))

    assert "full_name" in hidden and secret not in hidden
    assert secret in shown


def test_against_the_current_mapping_only_what_it_lacks(raw_event_store):
    upload_events(
        raw_event_store, "new.jsonl.gz", [event("2024-01-08 09:00:00", ehr_id="E1", shoe_size="42")]
    )
    uri = f"s3://{raw_event_store.bucket}/{raw_event_store.prefix}/new.jsonl.gz"

    snippet, _ = draft(run_job(raw_event_store, sources=[uri], against_current_mapping=True))

    assert "shoe_size" in snippet
    assert "city" not in snippet  # known to the shipped mapping


def test_a_source_that_names_nothing_fails_the_run_saying_so(raw_event_store):
    result = run_job(
        raw_event_store, sources=[f"s3://{raw_event_store.bucket}/{raw_event_store.prefix}/none.jsonl.gz"]
    )

    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "no such object" in (failure.step_failure_data.user_failure_data.description or "")
