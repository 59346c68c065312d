"""Per-value conversion rules of a column (CONTRACT §5), tested through ColumnMapping.convert."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amplitude_pipeline.transform.casts import ConversionFailure as CastFailure
from amplitude_pipeline.transform.casts import parse_datetime_utc
from amplitude_pipeline.transform.mapping import ColumnMapping, ConversionFailure, remembering_strings

# Zone-less datetimes and strings are UTC: checked under a local zone that is not UTC, where
# code reading them as local time would fail (on a UTC machine it would pass).
pytestmark = pytest.mark.usefixtures("non_utc_local_time")


def column(column_type: str = "str", **options: Any) -> ColumnMapping:
    return ColumnMapping(name="col", type=column_type, **options)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Москва", "Москва"), (42, "42"), (1.5, "1.5"), (True, "true"), (False, "false"), ("", "")],
)
def test_str_accepts_scalars_as_their_json_text(value: Any, expected: str) -> None:
    assert column("str").converter(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), (3.0, 3), ("42", 42), (" -5 ", -5), ("+8", 8)],
)
def test_int_accepts_integers_integral_floats_and_digit_strings(value: Any, expected: int) -> None:
    assert column("int").converter(value) == expected


@pytest.mark.parametrize("value", [True, 2.5, "4.0", "12abc", "1_000", "٣", 2**63, float("nan")])
def test_int_rejects_booleans_fractions_and_non_digit_text(value: Any) -> None:
    with pytest.raises(ConversionFailure):
        column("int").converter(value)


@pytest.mark.parametrize(
    "value", [2**63 - 1, -(2**63), str(2**63 - 1), str(-(2**63))], ids=["max", "min", "max-text", "min-text"]
)
def test_int_accepts_the_whole_64_bit_range(value: Any) -> None:
    assert column("int").converter(value) == int(value)


@pytest.mark.parametrize("value", [-(2**63) - 1, str(2**63), str(-(2**63) - 1)])
def test_int_rejects_one_beyond_the_64_bit_range(value: Any) -> None:
    with pytest.raises(ConversionFailure, match="64-bit range"):
        column("int").converter(value)


@pytest.mark.parametrize(
    ("column_type", "reason"),
    [("str", "a number beyond 64 bits"), ("int", "integer out of the 64-bit range")],
)
def test_a_float_of_2_to_the_64_may_have_lost_its_digits_and_is_an_error(
    column_type: str, reason: str
) -> None:
    with pytest.raises(ConversionFailure, match=reason):
        column(column_type).converter(2.0**64)


def test_a_float_of_minus_2_to_the_63_may_be_an_integer_below_the_range_and_is_an_error_for_int() -> None:
    """orjson reads -2**63 - 1 as the float -2**63: read as in range, it would load the wrong number."""
    with pytest.raises(ConversionFailure, match="out of the 64-bit range"):
        column("int").converter(-(2.0**63))


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (72.5, 72.5), ("72.5", 72.5), (" -1e3 ", -1000.0)])
def test_float_accepts_numbers_and_numeric_strings(value: Any, expected: float) -> None:
    converted = column("float").converter(value)
    assert converted == expected
    assert type(converted) is float


@pytest.mark.parametrize("value", ["nan", "inf", "Infinity", float("inf"), "1e999", "72,5", False])
def test_float_rejects_non_finite_and_non_numeric_values(value: Any) -> None:
    with pytest.raises(ConversionFailure):
        column("float").converter(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("TRUE", True),
        (" no ", False),
        ("Yes", True),
        ("0", False),
    ],
)
def test_bool_accepts_booleans_zero_one_and_words(value: Any, expected: bool) -> None:
    assert column("bool").converter(value) is expected


@pytest.mark.parametrize("value", [2, 1.0, "y", "on", "да"])
def test_bool_rejects_other_numbers_and_words(value: Any) -> None:
    with pytest.raises(ConversionFailure):
        column("bool").converter(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1985-03-12", date(1985, 3, 12)),
        ("12.03.1985", date(1985, 3, 12)),
        (" 2024-02-29 ", date(2024, 2, 29)),
    ],
)
def test_date_accepts_iso_and_dotted_day_first(value: str, expected: date) -> None:
    assert column("date").converter(value) == expected


@pytest.mark.parametrize(
    "value", ["2023-02-29", "03/12/1985", "1985-3-12", "2024-W01-1", "2024-01-08 10:00:00", 20240108]
)
def test_date_rejects_other_formats_and_impossible_dates(value: Any) -> None:
    with pytest.raises(ConversionFailure):
        column("date").converter(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-08 12:34:56", datetime(2024, 1, 8, 12, 34, 56, tzinfo=UTC)),
        ("2024-01-08 12:34:56.123456", datetime(2024, 1, 8, 12, 34, 56, 123456, tzinfo=UTC)),
        ("2024-01-08T12:34:56Z", datetime(2024, 1, 8, 12, 34, 56, tzinfo=UTC)),
        ("2024-01-08T15:34:56+03:00", datetime(2024, 1, 8, 12, 34, 56, tzinfo=UTC)),
    ],
)
def test_datetime_accepts_iso_and_amplitude_format_as_utc(value: str, expected: datetime) -> None:
    converted = column("datetime").converter(value)
    assert converted == expected
    assert converted.utcoffset() == timedelta(0)


def test_datetime_keeps_the_instant_of_an_offset_value() -> None:
    converted = column("datetime").converter("2024-01-08T00:30:00-05:00")
    assert converted == datetime(2024, 1, 8, 0, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert converted.tzinfo is UTC


def _reference_reading(text: str) -> datetime | str:
    """``fromisoformat``, then the instant in UTC, a naive time taken as UTC already."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return "refused"
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return "refused"


def _read(text: str) -> datetime | str:
    try:
        return parse_datetime_utc(text)
    except CastFailure:
        return "refused"


@given(
    st.text(alphabet="0123456789-+:.TZW ", max_size=32)
    | st.builds(
        lambda moment, tail: moment.isoformat(sep=" ") + tail,
        st.datetimes(),
        st.sampled_from(["", "+", "Z", "+03:00", "-0", "+00:00", "T", "-23:59"]),
    )
)
def test_datetime_reads_a_text_as_fromisoformat_in_utc_does(text: str) -> None:
    read = _read(text)
    assert read == _reference_reading(text)
    assert read == "refused" or (read.tzinfo is UTC and read.fold == 0)


@pytest.mark.parametrize("value", ["08.01.2024 12:00", "yesterday", 1704700000])
def test_datetime_rejects_non_iso_text_and_numbers(value: Any) -> None:
    with pytest.raises(ConversionFailure):
        column("datetime").converter(value)


@pytest.mark.parametrize("column_type", ["str", "int", "float", "bool", "date", "datetime"])
def test_json_null_is_null_for_every_type(column_type: str) -> None:
    assert column(column_type).converter(None) is None


@pytest.mark.parametrize("column_type", ["int", "float", "bool", "date", "datetime"])
def test_empty_string_is_null_for_every_type_but_str(column_type: str) -> None:
    assert column(column_type).converter("") is None


def test_empty_string_stays_empty_for_str() -> None:
    assert column("str").converter("") == ""


@pytest.mark.parametrize(
    "options", [{"regex": r"^\s*(\d+)"}, {"value_map": {"none": 0}}], ids=["regex", "value_map"]
)
def test_null_and_empty_string_are_null_before_regex_and_value_map(options: dict[str, Any]) -> None:
    age = column("int", **options)
    assert (age.converter(None), age.converter("")) == (None, None)


def test_empty_string_stays_empty_for_str_with_a_value_map() -> None:
    assert column("str", value_map={"м": "male"}).converter("") == ""


@pytest.mark.parametrize("column_type", ["str", "int", "float", "bool", "date", "datetime"])
@pytest.mark.parametrize("value", [["a"], {"a": 1}])
def test_lists_and_objects_are_an_error_for_every_type(column_type: str, value: Any) -> None:
    with pytest.raises(ConversionFailure, match=r"JSON (array|object)"):
        column(column_type).converter(value)


def test_lists_are_an_error_even_with_regex_and_value_map() -> None:
    with pytest.raises(ConversionFailure, match="JSON array"):
        column("str", regex=".*", value_map={"a": "b"}).converter(["a"])


def test_str_rejects_nul_characters_postgres_cannot_store() -> None:
    with pytest.raises(ConversionFailure, match="NUL"):
        column("str").converter("a\x00b")


def test_regex_with_a_group_keeps_the_first_group() -> None:
    assert column("int", regex=r"^\s*(\d+)").converter("38 лет") == 38


def test_regex_without_a_group_keeps_the_whole_match() -> None:
    assert column("str", regex=r"\d+\.\d+").converter("v5.2-beta") == "5.2"


def test_regex_searches_the_json_text_of_numbers_and_booleans() -> None:
    assert column("str", regex=r"^(\d+)\.").converter(72.5) == "72"
    assert column("str", regex=r"^t").converter(True) == "t"


def test_regex_without_a_match_is_an_error() -> None:
    with pytest.raises(ConversionFailure, match="does not match regex"):
        column("int", regex=r"^\s*(\d+)").converter("unknown")


def test_regex_optional_group_that_did_not_take_part_gives_null() -> None:
    assert column("int", regex=r"^(\d+)?").converter("abc") is None


def test_value_map_hit_replaces_the_value() -> None:
    gender = column("str", value_map={"м": "male", "ж": "female"})
    assert gender.converter("ж") == "female"
    assert gender.converter("м") == "male"


def test_value_map_miss_passes_the_value_through() -> None:
    assert column("str", value_map={"м": "male"}).converter("other") == "other"


def test_value_map_is_an_exact_match() -> None:
    assert column("str", value_map={"м": "male"}).converter("М") == "М"


def test_value_map_matches_the_json_text_of_booleans() -> None:
    assert column("str", value_map={"true": "premium"}).converter(True) == "premium"


def test_value_map_target_goes_through_the_cast() -> None:
    assert column("bool", value_map={"premium": "yes", "free": 0}).converter("premium") is True
    assert column("bool", value_map={"premium": "yes", "free": 0}).converter("free") is False


def test_value_map_applies_to_the_regex_output() -> None:
    level = column("int", regex=r"level-(\w+)", value_map={"max": 99})
    assert level.converter("level-max") == 99
    assert level.converter("level-7") == 7


def _fresh_copy(text: str) -> str:
    return "".join(list(text))  # an equal string that is another object, as each JSON line gives


@pytest.mark.parametrize("options", [{}, {"regex": r"(\w+)"}, {"value_map": {"msk": "Moscow"}}])
def test_a_text_column_returns_one_object_for_equal_strings(options: dict[str, Any]) -> None:
    convert = column("str", **options).converter
    first, again = convert(_fresh_copy("Kazan")), convert(_fresh_copy("Kazan"))
    assert first == again == "Kazan"
    assert first is again
    assert convert(_fresh_copy("Ufa")) == "Ufa"


def test_strings_past_the_remembering_limit_come_back_equal_and_unshared() -> None:
    convert = remembering_strings(lambda value: value, limit=2)
    kept = [convert(_fresh_copy(text)) for text in ("a1", "b2")]
    past = convert(_fresh_copy("c3"))
    assert [convert(_fresh_copy(text)) for text in ("a1", "b2")] == kept
    assert all(convert(_fresh_copy(text)) is shared for text, shared in zip(("a1", "b2"), kept, strict=True))
    again = convert(_fresh_copy("c3"))
    assert again == past == "c3"
    assert again is not past
    assert convert(None) is None


def test_a_remembered_string_is_converted_once_and_other_values_every_time() -> None:
    calls: list[Any] = []

    def convert(value: Any) -> Any:
        calls.append(value)
        if value == "bad":
            raise ConversionFailure("bad")
        return ("converted", type(value).__name__, value)

    remembering = remembering_strings(convert)
    results = [remembering(value) for value in ("34", _fresh_copy("34"), 1, 1, True, 1.0, None, None)]

    assert results[0] is results[1] == ("converted", "str", "34")
    assert results[2:6] == [("converted", "int", 1)] * 2 + [
        ("converted", "bool", True),
        ("converted", "float", 1.0),
    ]
    assert calls == ["34", 1, 1, True, 1.0, None, None]
    for _ in range(2):
        with pytest.raises(ConversionFailure):
            remembering("bad")
    assert calls[-2:] == ["bad", "bad"]
