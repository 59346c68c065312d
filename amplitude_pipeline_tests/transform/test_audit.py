"""The audit scans a whole JSON Lines file and aggregates every problem."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from amplitude_pipeline.transform.audit import audit_user_properties
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline_tests.transform.support import make_event


def write_events(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as stream:
        stream.writelines(line + b"\n" for line in lines)
    return path


def event_line(**user_properties: object) -> bytes:
    return orjson.dumps(make_event(**user_properties))


def test_audit_aggregates_unknown_keys_and_bad_values(tmp_path: Path, mappings: FieldMappings) -> None:
    lines = [event_line(ehr_id=f"E{i}", city="Kazan", age=str(20 + i)) for i in range(10)]
    lines[2] = event_line(ehr_id="E2", city="Kazan", mood="calm")
    lines[5] = event_line(ehr_id="E5", mood="tense", device_model="Pixel 8")
    lines[7] = event_line(ehr_id="E7", age="n/a", mood="calm")
    path = write_events(tmp_path / "2024-01-08.jsonl.gz", lines)

    with gzip.open(path, "rb") as stream:
        report = audit_user_properties(stream, mappings)

    assert report.lines_scanned == 10
    assert not report.passed
    assert [(f.key, f.count, f.first_line, f.examples) for f in report.unknown_keys] == [
        ("mood", 3, 2, ("'calm'", "'tense'")),
        ("device_model", 1, 5, ("'Pixel 8'",)),
    ]
    (failure,) = report.conversion_failures
    assert (failure.key, failure.column, failure.column_type, failure.count, failure.first_line) == (
        "age",
        "changeable.age",
        "int",
        1,
        7,
    )
    assert failure.example_value == "'n/a'"
    assert "does not match regex" in failure.reason
    assert report.malformed == ()


def test_audit_of_a_clean_file_passes(mappings: FieldMappings) -> None:
    report = audit_user_properties([event_line(ehr_id="E1", gender="м"), event_line(city="Ufa")], mappings)
    assert report.passed
    assert report.lines_scanned == 2
    assert "Audit passed" in report.summary()


def test_audit_counts_malformed_lines_by_problem(mappings: FieldMappings) -> None:
    lines = [
        event_line(city="Kazan"),
        b'{"uuid": "broken',
        b"[1, 2, 3]",
        orjson.dumps({"uuid": "0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01", "event_time": "2024-01-08 00:00:00"}),
        b'{"also": broken}',
    ]
    report = audit_user_properties(lines, mappings)
    assert [(f.problem, f.count, f.first_line) for f in report.malformed] == [
        ("json", 2, 1),
        ("record", 1, 2),
        ("user_properties", 1, 3),
    ]
    assert report.malformed_lines == 4
    # The loader's words for the same line (load/event_files.py), so the check and the load agree.
    assert report.malformed[0].message.startswith("malformed JSON line: ")


def test_the_observer_sees_each_well_formed_record_of_the_same_pass_with_its_line(
    mappings: FieldMappings,
) -> None:
    lines = [
        event_line(city="Kazan"),
        b'{"uuid": "broken',
        event_line(mood="calm"),
        orjson.dumps({"uuid": "0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01", "event_time": "2024-01-08 00:00:00"}),
        orjson.dumps({**make_event(city="Ufa"), "uuid": "not-a-uuid"}),
        b"",
        event_line(age="n/a"),
    ]
    seen: list[tuple[int, dict[str, object]]] = []

    report = audit_user_properties(
        lines, mappings, observe_record=lambda record, line: seen.append((line, record["user_properties"]))
    )

    assert seen == [(0, {"city": "Kazan"}), (2, {"mood": "calm"}), (6, {"age": "n/a"})]
    assert report.lines_scanned == 7


def test_audit_keeps_at_most_max_examples_distinct_values(mappings: FieldMappings) -> None:
    lines = [event_line(mood=mood) for mood in ["a", "b", "a", "c", "d"]]
    (finding,) = audit_user_properties(lines, mappings, max_examples=2).unknown_keys
    assert finding.count == 5
    assert finding.examples == ("'a'", "'b'")


def test_audit_skips_blank_lines(mappings: FieldMappings) -> None:
    report = audit_user_properties([event_line(city="Kazan"), b"\n", b""], mappings)
    assert report.passed
    assert report.lines_scanned == 3


def test_audit_summary_is_a_markdown_table_of_findings(mappings: FieldMappings) -> None:
    report = audit_user_properties([event_line(mood="a|b"), event_line(weight="heavy")], mappings)
    summary = report.summary()
    assert summary.startswith(
        "**Audit failed**: 2 lines scanned; 1 unknown keys, 1 keys with conversion failures"
    )
    assert "| mood | 1 | 0 | 'a\\|b' |" in summary
    assert "| weight | changeable.weight_kg | float | 1 | 1 | 'heavy' | not a number |" in summary


def test_audit_summary_limits_rows(mappings: FieldMappings) -> None:
    report = audit_user_properties([event_line(**{f"key_{i}": i for i in range(30)})], mappings)
    summary = report.summary(max_rows=5)
    assert len(report.unknown_keys) == 30
    assert summary.count("| key_") == 5
    assert "and 25 more" in summary


def test_audit_summary_layout_escapes_cells_and_counts_the_rows_left_out(mappings: FieldMappings) -> None:
    odd_key = "mo|od\\x\ny"
    lines = [event_line(**{odd_key: 1, "device": "x"}), event_line(age="n/a"), b"[1]"]
    summary = audit_user_properties(lines, mappings).summary(max_rows=1)
    assert summary == (
        "**Audit failed**: 3 lines scanned; 2 unknown keys, 1 keys with conversion failures, "
        "1 malformed lines.\n"
        "\n"
        "Unknown keys (add to `ignore` or map them in field_mappings.yaml):\n"
        "\n"
        "| key | records | first line | example |\n"
        "|---|---|---|---|\n"
        "| mo\\|od\\\\x y | 1 | 0 | 1 |\n"
        "\n"
        "…and 1 more.\n"
        "\n"
        "Conversion failures:\n"
        "\n"
        "| key | column | type | records | first line | example | reason |\n"
        "|---|---|---|---|---|---|---|\n"
        "| age | changeable.age | int | 1 | 1 | 'n/a' | does not match regex '^\\\\\\\\s*(\\\\\\\\d+)' |\n"
        "\n"
        "Malformed lines:\n"
        "\n"
        "| problem | lines | first line | message |\n"
        "|---|---|---|---|\n"
        "| record | 1 | 2 | record = [1]: expected a JSON object, got a JSON array |"
    )
