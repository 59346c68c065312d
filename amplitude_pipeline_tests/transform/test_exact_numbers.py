"""Whole numbers beyond 64 bits keep their digits (issue 15): orjson makes them floats, so a line
where it did is read again exactly, by the loader (``transform_line``) and the audit alike."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from amplitude_pipeline.transform import json_line
from amplitude_pipeline.transform.audit import audit_user_properties
from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings, parse_field_mappings
from amplitude_pipeline.transform.records import (
    MalformedRecordError,
    UnknownKeyError,
    UserPropertiesMemo,
    ValueConversionError,
    transform_single_record,
)
from amplitude_pipeline_tests.transform.support import SMALL_MAPPING, make_event

TWO_TO_THE_SEVENTY = "1180591620717411303424"
FOUR_HUNDRED_DIGITS = "1" + "0" * 399  # beyond a double: orjson refuses the line for its size


def line_with(**literals: str) -> bytes:
    """An event line whose ``user_properties`` hold each keyword's value as the JSON text given."""
    placeholders = {key: f"@{key}@" for key in literals}
    line = orjson.dumps(make_event(ehr_id="E1", **placeholders))
    for key, literal in literals.items():
        line = line.replace(f'"@{key}@"'.encode(), literal.encode())
    return line


@pytest.fixture
def typed_mappings() -> FieldMappings:
    """SMALL_MAPPING plus an int column without a regex and a value_map keyed by 2**70."""
    changeable = SMALL_MAPPING["changeable"] | {
        "height": {"type": "int"},
        "tier": {"value_map": {TWO_TO_THE_SEVENTY: "astronomic"}},
    }
    return parse_field_mappings(SMALL_MAPPING | {"changeable": changeable})


def changeable(record: Any, mappings: FieldMappings, column: str) -> Any:
    names = [mapping.name for mapping in mappings.changeable]
    return record.changeable[names.index(column)]


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (TWO_TO_THE_SEVENTY, TWO_TO_THE_SEVENTY),
        ("-" + TWO_TO_THE_SEVENTY, "-" + TWO_TO_THE_SEVENTY),
        ("18446744073709551616", "18446744073709551616"),
        # One below the signed range: orjson's float -2**63 read as in range, stored as its repr.
        ("-9223372036854775809", "-9223372036854775809"),
        (FOUR_HUNDRED_DIGITS, FOUR_HUNDRED_DIGITS),
        # Numbers the fast reading keeps exactly are what they were.
        ("18446744073709551615", "18446744073709551615"),
        ("1.5", "1.5"),
        ("1e16", "1e+16"),
    ],
    ids=["2**70", "-2**70", "2**64", "-2**63-1", "400-digits", "2**64-1", "1.5", "1e16"],
)
def test_a_str_column_stores_the_digits_of_the_json_text(
    typed_mappings: FieldMappings, literal: str, expected: str
) -> None:
    record = transform_line(line_with(city=literal), typed_mappings)
    assert changeable(record, typed_mappings, "city") == expected


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("1e30", "1000000000000000000000000000000"),
        ("1.5E+30", "1500000000000000000000000000000"),
        ("1.23456789012345678901e30", "1234567890123456789010000000000"),
        ("-9.223372036854775809e18", "-9223372036854775809"),
    ],
)
def test_a_number_beyond_64_bits_with_an_exponent_is_the_integer_jsonb_holds(
    typed_mappings: FieldMappings, literal: str, expected: str
) -> None:
    """PostgreSQL's jsonb holds ``1e30`` as 1000000000000000000000000000000 (it keeps no exponent), so a
    tmp_user_properties row gives that integer: the event file gives the same."""
    record = transform_line(line_with(city=literal), typed_mappings)
    assert changeable(record, typed_mappings, "city") == expected


def test_a_number_beyond_64_bits_written_with_a_fraction_is_refused_where_its_text_matters(
    typed_mappings: FieldMappings,
) -> None:
    """jsonb keeps the fraction, so the tmp row's value is a float too: a float whose digits are gone."""
    with pytest.raises(ValueConversionError) as raised:
        transform_line(line_with(city="1000000000000000000000000000000.5"), typed_mappings)
    assert raised.value.key == "city"
    assert "beyond 64 bits" in raised.value.reason


@pytest.mark.parametrize("literal", [TWO_TO_THE_SEVENTY, "-9223372036854775809", "1e30"])
def test_an_int_column_refuses_a_number_beyond_64_bits(typed_mappings: FieldMappings, literal: str) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_line(line_with(height=literal), typed_mappings)
    assert (raised.value.key, raised.value.reason) == ("height", "integer out of the 64-bit range")


def test_a_regex_searches_the_digits(typed_mappings: FieldMappings) -> None:
    """age is ``int`` with regex ``^\\s*(\\d+)``: the regex takes all 22 digits (not the "1" of
    "1.1805916207174113e+21"), and the int cast refuses them."""
    with pytest.raises(ValueConversionError) as raised:
        transform_line(line_with(age=TWO_TO_THE_SEVENTY), typed_mappings)
    assert raised.value.key == "age"
    assert raised.value.value == 2**70
    assert raised.value.reason == "integer out of the 64-bit range"


def test_a_value_map_looks_up_the_digits(typed_mappings: FieldMappings) -> None:
    record = transform_line(line_with(tier=TWO_TO_THE_SEVENTY), typed_mappings)
    assert changeable(record, typed_mappings, "tier") == "astronomic"


@pytest.mark.parametrize(
    ("literal", "expected"), [(TWO_TO_THE_SEVENTY, float(2**70)), ("-" + TWO_TO_THE_SEVENTY, -float(2**70))]
)
def test_a_float_column_holds_the_float_of_the_exact_integer(
    typed_mappings: FieldMappings, literal: str, expected: float
) -> None:
    assert changeable(
        transform_line(line_with(weight=literal), typed_mappings), typed_mappings, "weight_kg"
    ) == (expected)


def test_a_float_column_refuses_an_integer_beyond_a_double(typed_mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError, match="number too large for a float"):
        transform_line(line_with(weight=FOUR_HUNDRED_DIGITS), typed_mappings)


def test_an_ehr_id_beyond_64_bits_is_its_digits(typed_mappings: FieldMappings) -> None:
    line = line_with(city='"Kazan"').replace(b'"ehr_id":"E1"', f'"ehr_id":{TWO_TO_THE_SEVENTY}'.encode())
    assert transform_line(line, typed_mappings).ehr_id == TWO_TO_THE_SEVENTY


def test_an_amplitude_id_beyond_64_bits_is_out_of_the_bigint_range(typed_mappings: FieldMappings) -> None:
    line = line_with(city='"Kazan"').replace(b"987654321", TWO_TO_THE_SEVENTY.encode())
    with pytest.raises(MalformedRecordError, match="out of the 64-bit range of a bigint column") as raised:
        transform_line(line, typed_mappings)
    assert raised.value.value == 2**70


def test_an_unknown_key_names_the_exact_value(typed_mappings: FieldMappings) -> None:
    with pytest.raises(UnknownKeyError) as raised:
        transform_line(line_with(mood=TWO_TO_THE_SEVENTY), typed_mappings)
    assert raised.value.value == 2**70


def test_the_memo_tells_the_exact_integer_from_the_float_equal_to_it(typed_mappings: FieldMappings) -> None:
    """2**70 and 1.1805916207174113e+21 are equal numbers whose texts differ."""
    memo = UserPropertiesMemo()
    digits = transform_line(line_with(city=TWO_TO_THE_SEVENTY), typed_mappings, memo)
    rounded = transform_line(line_with(city="1.1805916207174113e+21"), typed_mappings, memo)
    again = transform_line(line_with(city=TWO_TO_THE_SEVENTY), typed_mappings, memo)
    assert [changeable(record, typed_mappings, "city") for record in (digits, rounded, again)] == [
        TWO_TO_THE_SEVENTY,
        "1180591620717411300000",
        TWO_TO_THE_SEVENTY,
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (line_with(weight="1e309"), "number is infinity when parsed as double"),
        (line_with(city=FOUR_HUNDRED_DIGITS, weight="NaN"), "number is infinity when parsed as double"),
        (line_with(city=FOUR_HUNDRED_DIGITS, mood='"\\ud800"'), "number is infinity when parsed as double"),
        (line_with(city="1" + "0" * 5000), "number is infinity when parsed as double"),
        (line_with(city=TWO_TO_THE_SEVENTY, weight="NaN"), "unexpected character"),
        (line_with(city="[" * 1100 + TWO_TO_THE_SEVENTY + "]" * 1100), "depth limit exceeded"),
    ],
    ids=["float-beyond-a-double", "nan", "lone-surrogate", "5000-digits", "nan-first-read", "too-deep"],
)
def test_a_line_orjson_refuses_for_another_reason_is_refused_with_orjsons_message(
    typed_mappings: FieldMappings, line: bytes, message: str
) -> None:
    with pytest.raises(orjson.JSONDecodeError) as raised:
        transform_line(line, typed_mappings)
    assert message in raised.value.msg


def test_a_line_the_exact_reading_cannot_read_keeps_the_first_error(typed_mappings: FieldMappings) -> None:
    """Nesting that orjson reads (under 1,024 levels) but Python's json does not (its recursion
    limit): the line is refused as the fast reading found it."""
    nested = "[" * 1000 + TWO_TO_THE_SEVENTY + "]" * 1000
    with pytest.raises(UnknownKeyError) as raised:
        transform_line(line_with(city='"Kazan"', mood=nested), typed_mappings)
    assert raised.value.key == "mood"


def test_an_ordinary_line_is_read_once_by_orjson(
    typed_mappings: FieldMappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_read(line: bytes) -> Any:
        raise AssertionError("an ordinary line was read again")

    monkeypatch.setattr(json_line, "read_exactly", must_not_read)
    line = line_with(city='"Kazan"', age='"38"', weight="72.5", height="-9223372036854775808")
    assert transform_line(line, typed_mappings) == transform_single_record(orjson.loads(line), typed_mappings)


def test_an_ordinary_error_is_read_once_by_orjson(
    typed_mappings: FieldMappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_read(line: bytes) -> Any:
        raise AssertionError("a line without lost digits was read again")

    monkeypatch.setattr(json_line, "read_exactly", must_not_read)
    with pytest.raises(UnknownKeyError):
        transform_line(line_with(mood="1e16"), typed_mappings)


def test_the_audit_judges_as_the_loader_does(typed_mappings: FieldMappings) -> None:
    lines = [
        line_with(city=TWO_TO_THE_SEVENTY),
        line_with(city=FOUR_HUNDRED_DIGITS),
        line_with(city="1e30"),
        line_with(height=TWO_TO_THE_SEVENTY),
        line_with(city="1000000000000000000000000000000.5"),
        line_with(weight="1e309"),
        line_with(mood="-" + TWO_TO_THE_SEVENTY),
    ]
    report = audit_user_properties(lines, typed_mappings)
    assert [(f.key, f.first_line, f.example_value, f.reason) for f in report.conversion_failures] == [
        ("height", 3, TWO_TO_THE_SEVENTY, "integer out of the 64-bit range"),
        ("city", 4, "1e+30", report.conversion_failures[1].reason),
    ]
    assert "beyond 64 bits" in report.conversion_failures[1].reason
    assert [(f.problem, f.first_line) for f in report.malformed] == [("json", 5)]
    assert "number is infinity" in report.malformed[0].message
    assert [(f.key, f.examples) for f in report.unknown_keys] == [("mood", ("-" + TWO_TO_THE_SEVENTY,))]


def test_the_audit_passes_a_str_column_of_2_to_the_70(mappings: FieldMappings) -> None:
    assert audit_user_properties([line_with(city=TWO_TO_THE_SEVENTY)], mappings).passed
