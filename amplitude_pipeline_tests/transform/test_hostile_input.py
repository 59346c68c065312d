"""Values a column cannot hold and inputs built to hurt (issue 9, items 2–6): each is refused by
the transform, naming the key or entry, in bounded time and with a message of readable length."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from amplitude_pipeline.transform.audit import audit_user_properties
from amplitude_pipeline.transform.mapping import FieldMappings, MappingFileError, load_field_mappings
from amplitude_pipeline.transform.records import (
    MalformedRecordError,
    RecordError,
    UnknownKeyError,
    ValueConversionError,
    transform_single_record,
    transform_user_properties,
)
from amplitude_pipeline_tests.transform.support import make_event

MESSAGE_BOUND = 600
TWO_TO_THE_SEVENTY = orjson.loads(b"1180591620717411303424")


@pytest.mark.parametrize(
    "event_time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01 00:30:00+00:31"]
)
def test_an_event_time_that_leaves_the_calendar_in_utc_is_malformed(
    mappings: FieldMappings, event_time: str
) -> None:
    with pytest.raises(MalformedRecordError) as raised:
        transform_single_record(make_event(city="Kazan") | {"event_time": event_time}, mappings)
    assert raised.value.key == "event_time"
    assert "out of the supported range" in str(raised.value)


def test_a_datetime_column_value_that_leaves_the_calendar_in_utc_is_a_conversion_error(
    tmp_path: Path,
) -> None:
    mappings = load_mapping(tmp_path, "changeable:\n  seen_at: {type: datetime}\n")
    with pytest.raises(ValueConversionError, match="out of the supported range"):
        transform_user_properties({"seen_at": "0001-01-01T00:00:00+01:00"}, mappings)


def test_an_ehr_id_longer_than_an_index_can_hold_is_refused(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"ehr_id": "x" * 3000}, mappings)
    assert (raised.value.key, raised.value.column) == ("ehr_id", "identity")
    assert "longer than" in raised.value.reason


def test_an_ehr_id_at_the_limit_is_kept(mappings: FieldMappings) -> None:
    ehr_id = "я" * 500  # 1,000 bytes in UTF-8
    assert transform_user_properties({"ehr_id": ehr_id}, mappings)[0] == ehr_id


def test_an_int_column_with_a_regex_refuses_a_number_beyond_64_bits(mappings: FieldMappings) -> None:
    assert type(TWO_TO_THE_SEVENTY) is float  # what orjson makes of it: its digits are gone
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"age": TWO_TO_THE_SEVENTY}, mappings)
    assert raised.value.column == "changeable.age"


@pytest.mark.parametrize("value", [TWO_TO_THE_SEVENTY, -(2.0**63)], ids=["2**70", "-2**63"])
def test_a_str_column_refuses_a_float_whose_digits_the_parser_may_have_lost(
    mappings: FieldMappings, value: float
) -> None:
    """-2**63 is also what orjson makes of -2**63 - 1. The loaders read such a line again exactly
    (test_exact_numbers.py); a float left after that was written with a fraction."""
    with pytest.raises(ValueConversionError, match="send it as a string"):
        transform_user_properties({"city": value}, mappings)


@pytest.mark.parametrize("value", [1.5, 1e16, 2.0**63, -(2.0**63) + 2048, 12345678901234567890])
def test_numbers_the_parser_keeps_exactly_still_convert_to_text(mappings: FieldMappings, value: Any) -> None:
    expected = repr(value) if type(value) is float else str(value)
    assert transform_user_properties({"city": value}, mappings)[2][1] == expected


def huge_key() -> str:
    return "k" * 1_000_000


@pytest.mark.parametrize(
    "user_properties",
    [
        {huge_key(): "v"},
        {"city": ["x" * 1_000_000]},
        {"age": "y" * 1_000_000},
        {"ehr_id": {"z" * 1_000_000: 1}},
    ],
    ids=["unknown-key", "bad-value", "regex-miss", "identity"],
)
def test_errors_about_huge_keys_and_values_stay_readable(mappings: FieldMappings, user_properties) -> None:
    with pytest.raises(RecordError) as raised:
        transform_user_properties(user_properties, mappings)
    assert len(str(raised.value)) < MESSAGE_BOUND


def test_a_huge_unknown_key_is_cut_in_the_audit_too(mappings: FieldMappings) -> None:
    lines = io.BytesIO(gzip.compress(orjson.dumps(make_event(**{huge_key(): 1})) + b"\n"))
    with gzip.open(lines, "rb") as stream:
        report = audit_user_properties(stream, mappings)
    assert len(report.unknown_keys) == 1
    assert len(report.summary()) < 2 * MESSAGE_BOUND


def test_a_malformed_field_with_a_huge_value_stays_readable(mappings: FieldMappings) -> None:
    with pytest.raises(MalformedRecordError) as raised:
        transform_single_record(make_event() | {"uuid": "u" * 1_000_000}, mappings)
    assert len(str(raised.value)) < MESSAGE_BOUND


def test_an_unknown_key_error_keeps_the_whole_key_for_programs(mappings: FieldMappings) -> None:
    with pytest.raises(UnknownKeyError) as raised:
        transform_user_properties({huge_key(): 1}, mappings)
    assert raised.value.key == huge_key()


def billion_laughs(levels: int = 9) -> str:
    """One YAML flow value of nine anchors, each a list of nine aliases of the previous one:
    9**9 strings once expanded, a few hundred bytes as text."""
    anchors = ["&l0 [" + ", ".join(["lol"] * 9) + "]"]
    anchors += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


def load_mapping(
    tmp_path: Path, sections: str, *, prelude: str = "", identity: str = "ehr_id"
) -> FieldMappings:
    path = tmp_path / "field_mappings.yaml"
    path.write_text(f"{prelude}identity:\n  ehr_id: {identity}\n{sections}", encoding="utf-8")
    return load_field_mappings(path)


@pytest.mark.timeout(10)
def test_an_anchor_bomb_as_the_identity_key_is_refused_naming_the_entry(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError) as raised:
        load_mapping(tmp_path, "", identity=billion_laughs())
    assert "identity.ehr_id" in str(raised.value)
    assert len(str(raised.value)) < MESSAGE_BOUND


@pytest.mark.timeout(10)
def test_an_anchor_bomb_as_a_value_map_target_is_refused_naming_the_entry(tmp_path: Path) -> None:
    sections = f"changeable:\n  mood:\n    value_map: {{calm: {billion_laughs()}}}\n"
    with pytest.raises(MappingFileError) as raised:
        load_mapping(tmp_path, sections)
    assert "changeable.mood.value_map" in str(raised.value)
    assert len(str(raised.value)) < MESSAGE_BOUND


@pytest.mark.timeout(10)
def test_an_anchor_bomb_in_the_ignore_list_is_refused_naming_the_entry(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError) as raised:
        load_mapping(tmp_path, f"ignore:\n  - {billion_laughs()}\n")
    assert "ignore[0]" in str(raised.value)
    assert len(str(raised.value)) < MESSAGE_BOUND


@pytest.mark.parametrize("event_time", ["2024-01-08", "20240108"])
def test_an_event_time_without_a_time_of_day_is_malformed(mappings: FieldMappings, event_time: str) -> None:
    with pytest.raises(MalformedRecordError, match="a date without a time of day"):
        transform_single_record(make_event(city="Kazan") | {"event_time": event_time}, mappings)
