"""The DWH resource of a run: its connections end with the run; the mapping it builds tables
from is parsed once per content (issue 11)."""

import os
import uuid

import pytest
from dagster import materialize
from sqlalchemy import create_engine, text

from amplitude_pipeline.defs.resources import DWHResource, FieldMappingsResource
from amplitude_pipeline.defs.user_properties.assets import user_properties_tables
from amplitude_pipeline.storage import field_mappings
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline_tests.defs.support import WEEK
from amplitude_pipeline_tests.load.events import event, upload_events
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS, pipeline_resources


def connections_named(application_name: str) -> int:
    engine = create_engine(os.environ["DWH_URL"])
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name},
        ).scalar_one()
    engine.dispose()
    return count


@pytest.mark.integration
def test_a_runs_dwh_connections_are_closed_when_the_run_ends(raw_event_store, dwh_schema):
    application_name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    dwh = DWHResource(
        url=f"{os.environ['DWH_URL']}?application_name={application_name}",
        db_schema=dwh_schema,
        field_mappings=FieldMappingsResource(path=str(DEFAULT_MAPPINGS)),
    )
    upload_events(raw_event_store, f"{WEEK}.jsonl.gz", [event("2024-01-08 10:00:00", ehr_id="E1")])

    result = materialize(
        [user_properties_tables],
        partition_key=WEEK,
        resources=pipeline_resources(store=raw_event_store) | {"dwh": dwh},  # the resource, not a plain DWH,
    )

    assert result.success
    assert connections_named(application_name) == 0


def test_the_mapping_file_is_parsed_once_per_content(tmp_path, monkeypatch):
    path = tmp_path / "field_mappings.yaml"
    path.write_bytes(DEFAULT_MAPPINGS.read_bytes())
    parses = []
    real_parse = field_mappings.parse_mapping_text

    def counting_parse(content, source_name):
        parses.append(source_name)
        return real_parse(content, source_name)

    monkeypatch.setattr(field_mappings, "parse_mapping_text", counting_parse)
    field_mappings._parsed.cache_clear()

    first = load_field_mappings_once(path)
    assert load_field_mappings_once(str(path)) is first
    path.write_text(DEFAULT_MAPPINGS.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert load_field_mappings_once(path) is not first
    assert parses == [str(path), str(path)]
