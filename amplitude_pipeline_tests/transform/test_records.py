"""Record transformation: key rules, identity rule, record fields, errors and comparison."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from amplitude_pipeline.transform import records
from amplitude_pipeline.transform.mapping import FieldMappings, load_field_mappings
from amplitude_pipeline.transform.records import (
    MISSING,
    MalformedRecordError,
    RecordError,
    TransformedRecord,
    UnknownKeyError,
    UserPropertiesMemo,
    ValueConversionError,
    collect_envelope_errors,
    collect_record_errors,
    transform_single_record,
    transform_user_properties,
)
from amplitude_pipeline_tests.transform.support import make_event

from .test_mapping_file import DEFAULT_MAPPING_FILE

# Zone-less datetimes and strings are UTC: checked under a local zone that is not UTC, where
# code reading them as local time would fail (on a UTC machine it would pass).
pytestmark = pytest.mark.usefixtures("non_utc_local_time")


def test_all_keys_are_routed_to_their_columns(mappings: FieldMappings) -> None:
    result = transform_user_properties(
        {"ehr_id": "E1", "gender": "м", "birth_date": "1985-03-12", "age": "38", "city": "Kazan",
         "premium": "yes", "weight": "72.5"},
        mappings,
    )  # fmt: skip
    assert result == ("E1", ("male", date(1985, 3, 12)), (38, "Kazan", True, 72.5))


def test_missing_keys_are_null(mappings: FieldMappings) -> None:
    assert transform_user_properties({"city": "Kazan"}, mappings) == (
        None,
        (None, None),
        (None, "Kazan", None, None),
    )


def test_unknown_key_is_an_error_naming_the_key(mappings: FieldMappings) -> None:
    with pytest.raises(UnknownKeyError) as raised:
        transform_user_properties({"city": "Kazan", "favourite_colour": "teal"}, mappings)
    assert raised.value.key == "favourite_colour"
    assert raised.value.value == "teal"
    assert str(raised.value).startswith("user_properties['favourite_colour'] = 'teal': unknown key")


def test_ignored_key_is_dropped(mappings: FieldMappings) -> None:
    result = transform_user_properties({"initial_gclid": ["not", "even", "scalar"], "city": "Ufa"}, mappings)
    assert result == (None, (None, None), (None, "Ufa", None, None))


def test_conversion_error_names_key_column_type_and_reason(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"weight": "heavy"}, mappings)
    error = raised.value
    assert (error.key, error.value, error.column, error.column_type) == (
        "weight",
        "heavy",
        "changeable.weight_kg",
        "float",
    )
    assert (
        str(error)
        == "user_properties['weight'] = 'heavy': not a number (column changeable.weight_kg, type float)"
    )


def test_error_message_truncates_long_values(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"city": {"name": "x" * 500}}, mappings)
    message = str(raised.value)
    assert "..." in message
    assert len(message) < 200
    assert "\n" not in message


def test_record_errors_survive_pickling(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"age": "n/a"}, mappings)
    restored = pickle.loads(pickle.dumps(raised.value))
    assert str(restored) == str(raised.value)


@pytest.mark.parametrize(
    ("error_type", "arguments"),
    [
        (UnknownKeyError, ("mood", "calm")),
        (MalformedRecordError, ("uuid", MISSING, "missing")),
        (MalformedRecordError, (None, [1, 2], "expected a JSON object, got a JSON array")),
    ],
    ids=["unknown-key", "missing-field", "not-an-object"],
)
def test_every_record_error_survives_pickling(
    error_type: type[RecordError], arguments: tuple[Any, ...]
) -> None:
    error = error_type(*arguments)
    restored = pickle.loads(pickle.dumps(error))
    assert (type(restored), restored.key, restored.reason, str(restored)) == (
        error_type,
        error.key,
        error.reason,
        str(error),
    )
    assert restored.value == error.value


def test_conversion_error_of_a_permanent_column_names_its_section(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"birth_date": "someday"}, mappings)
    assert (raised.value.column, raised.value.column_type) == ("permanent.birth_date", "date")


def test_cyrillic_values_map_and_pass_through_default_mapping() -> None:
    default = load_field_mappings(DEFAULT_MAPPING_FILE)
    _, permanent, changeable = transform_user_properties(
        {"gender": "ж", "city": "Санкт-Петербург", "age": "38 лет"}, default
    )
    assert permanent[0] == "female"
    assert "Санкт-Петербург" in changeable
    assert changeable[0] == 38


@pytest.mark.parametrize(
    ("user_properties", "expected"),
    [
        ({}, None),
        ({"ehr_id": None}, None),
        ({"ehr_id": "  EHR-7 "}, "EHR-7"),
        ({"ehr_id": "   "}, None),
        ({"ehr_id": 1234567}, "1234567"),
    ],
    ids=["missing", "null", "stripped", "blank", "numeric"],
)
def test_identity_rule(
    mappings: FieldMappings, user_properties: dict[str, Any], expected: str | None
) -> None:
    assert transform_user_properties(user_properties, mappings)[0] == expected


@pytest.mark.parametrize("value", [True, 12.5, ["E1"], {"id": "E1"}], ids=["bool", "float", "list", "object"])
def test_identity_of_other_types_is_a_conversion_error(mappings: FieldMappings, value: Any) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_user_properties({"ehr_id": value}, mappings)
    error = raised.value
    assert (error.key, error.value, error.column, error.column_type) == ("ehr_id", value, "identity", "str")


def test_identity_with_a_nul_character_is_a_conversion_error(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError, match="NUL character") as raised:
        transform_user_properties({"ehr_id": "E\x001"}, mappings)
    assert raised.value.column == "identity"


def test_amplitude_event_is_transformed(mappings: FieldMappings) -> None:
    record = transform_single_record(make_event(ehr_id="E1", city="Kazan"), mappings)
    assert record == TransformedRecord(
        uuid="0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01",
        event_time=datetime(2024, 1, 8, 12, 34, 56, 789012, tzinfo=UTC),
        amplitude_id=987654321,
        ehr_id="E1",
        permanent=(None, None),
        changeable=(None, "Kazan", None, None),
    )


def test_tmp_row_with_uuid_object_and_aware_datetime_is_transformed(mappings: FieldMappings) -> None:
    row = {
        "uuid": uuid.UUID("6f1c2a7e-0d4b-4f6e-8a51-2c9e3b7d5a10"),
        "amplitude_id": None,
        "user_properties": {"ehr_id": "E2", "premium": False},
        "event_time": datetime(2024, 1, 8, 15, 0, tzinfo=timezone(timedelta(hours=3))),
        "migrated": False,
    }
    record = transform_single_record(row, mappings)
    assert record.uuid == "6f1c2a7e-0d4b-4f6e-8a51-2c9e3b7d5a10"
    assert record.event_time == datetime(2024, 1, 8, 12, 0, tzinfo=UTC)
    assert record.event_time.tzinfo is UTC
    assert (record.amplitude_id, record.ehr_id, record.changeable[2]) == (None, "E2", False)


def test_tmp_row_naive_datetime_is_taken_as_utc(mappings: FieldMappings) -> None:
    row = {"uuid": uuid.uuid4(), "event_time": datetime(2024, 1, 8, 9, 30), "user_properties": {}}
    assert transform_single_record(row, mappings).event_time == datetime(2024, 1, 8, 9, 30, tzinfo=UTC)


def test_non_canonical_uuid_text_is_normalised(mappings: FieldMappings) -> None:
    event = make_event() | {"uuid": "0B8F5F0E9D1C4C559A1E3F1F2B6A7C01"}
    assert transform_single_record(event, mappings).uuid == "0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("uuid", MISSING, "missing"),
        ("uuid", "not-a-uuid", "not a UUID"),
        ("uuid", 5, "expected a UUID string, got a number"),
        ("event_time", MISSING, "missing"),
        ("event_time", "08/01/2024", "not a datetime"),
        ("event_time", "2024-01-08", "a date without a time of day"),
        ("event_time", 1704700000, "expected a 'YYYY-MM-DD HH:MM:SS' string, got a number"),
        ("event_time", datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "out of the supported"),
        ("amplitude_id", "987", "expected an integer, got a string"),
        ("amplitude_id", True, "expected an integer"),
        ("amplitude_id", 2**63, "out of the 64-bit range"),
        ("amplitude_id", -(2**63) - 1, "out of the 64-bit range"),
        ("user_properties", MISSING, "missing"),
        ("user_properties", None, "expected a JSON object, got null"),
        ("user_properties", "{}", "expected a JSON object, got a string"),
    ],
)
def test_malformed_record_fields_are_errors(
    mappings: FieldMappings, field: str, value: Any, reason: str
) -> None:
    event = make_event(city="Kazan")
    if value is MISSING:
        del event[field]
    else:
        event[field] = value
    with pytest.raises(MalformedRecordError) as raised:
        transform_single_record(event, mappings)
    assert raised.value.key == field
    assert raised.value.value == value
    assert reason in str(raised.value)
    assert str(raised.value).startswith(f"record['{field}']")


def test_record_that_is_not_an_object_is_malformed(mappings: FieldMappings) -> None:
    with pytest.raises(
        MalformedRecordError, match=r"^record = \[1, 2\]: expected a JSON object, got a JSON array"
    ):
        transform_single_record([1, 2], mappings)  # type: ignore[arg-type]


@pytest.mark.parametrize("amplitude_id", [2**63 - 1, -(2**63)], ids=["max", "min"])
def test_amplitude_id_takes_the_whole_bigint_range(mappings: FieldMappings, amplitude_id: int) -> None:
    event = make_event() | {"amplitude_id": amplitude_id}
    assert transform_single_record(event, mappings).amplitude_id == amplitude_id


def test_missing_amplitude_id_is_null(mappings: FieldMappings) -> None:
    event = make_event()
    del event["amplitude_id"]
    assert transform_single_record(event, mappings).amplitude_id is None


def test_collect_record_errors_reports_every_problem_in_key_order(mappings: FieldMappings) -> None:
    errors = collect_record_errors(
        {"mood": "ok", "age": "old", "city": "Kazan", "ehr_id": 1.5, "device": "x"}, mappings
    )
    assert [(type(e).__name__, e.key) for e in errors] == [
        ("UnknownKeyError", "mood"),
        ("ValueConversionError", "age"),
        ("ValueConversionError", "ehr_id"),
        ("UnknownKeyError", "device"),
    ]


def test_collect_record_errors_of_user_properties_that_are_not_an_object(mappings: FieldMappings) -> None:
    (error,) = collect_record_errors("{}", mappings)
    assert (type(error), error.key, error.value) == (MalformedRecordError, "user_properties", "{}")
    assert "expected a JSON object, got a string" in str(error)


def test_collect_record_errors_is_empty_for_a_good_record(mappings: FieldMappings) -> None:
    assert collect_record_errors({"ehr_id": "E1", "age": "38 лет"}, mappings) == []


def test_collect_envelope_errors_lists_every_bad_field() -> None:
    errors = collect_envelope_errors({"uuid": 5, "event_time": "soon", "user_properties": {}})
    assert [e.key for e in errors] == ["uuid", "event_time"]


def test_the_memo_gives_a_repeated_snapshot_the_values_of_a_fresh_conversion(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo()
    event = make_event(ehr_id="E1", age="34 years", premium="yes", city="Kazan")
    first = transform_single_record(event, mappings, memo)
    later = transform_single_record({**event, "event_time": "2024-01-08 13:00:00"}, mappings, memo)
    assert later.changeable == first.changeable == transform_single_record(event, mappings).changeable
    assert later.event_time == datetime(2024, 1, 8, 13, tzinfo=UTC)


def test_the_memo_converts_again_an_equal_value_of_another_json_type(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo()
    transform_single_record(make_event(ehr_id="E1", city=1), mappings, memo)
    as_true = transform_single_record(make_event(ehr_id="E1", city=True), mappings, memo)
    assert as_true.changeable[1] == "true"


def test_a_full_memo_starts_afresh_and_stays_correct(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo(max_users=2, window=10)
    cities = {}
    for user in range(5):
        record = transform_single_record(make_event(ehr_id=f"E{user}", city=f"c{user}"), mappings, memo)
        cities[record.ehr_id] = record.changeable[1]
    again = transform_single_record(make_event(ehr_id="E0", city="c0"), mappings, memo)
    assert cities == {f"E{user}": f"c{user}" for user in range(5)}
    assert again.changeable[1] == "c0"
    assert len(memo) <= 2


def test_the_memo_converts_a_users_changed_snapshot(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo()
    transform_single_record(make_event(ehr_id="E1", city="Kazan"), mappings, memo)
    moved = transform_single_record(make_event(ehr_id="E1", city="Ufa"), mappings, memo)
    assert moved.changeable[1] == "Ufa"


def test_an_unhashable_ehr_id_is_a_conversion_error_with_the_memo_too(mappings: FieldMappings) -> None:
    with pytest.raises(ValueConversionError) as raised:
        transform_single_record(make_event(ehr_id=["E1"]), mappings, UserPropertiesMemo())
    assert raised.value.column == "identity"


def test_the_memo_converts_each_users_repeated_snapshot_once(
    mappings: FieldMappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Patients by ehr_id (sharing an amplitude_id) and anonymous users by amplitude_id, interleaved."""
    converted: list[dict[str, Any]] = []
    convert = records.transform_user_properties

    def counting(user_properties: dict[str, Any], mappings: FieldMappings) -> Any:
        converted.append(user_properties)
        return convert(user_properties, mappings)

    monkeypatch.setattr(records, "transform_user_properties", counting)
    memo = UserPropertiesMemo()
    users = [({"ehr_id": "E1"}, 1), ({"ehr_id": "E2"}, 1), ({}, 11), ({}, 12)]
    for _ in range(3):
        for identity, amplitude_id in users:
            event = make_event(city="Kazan", **identity) | {"amplitude_id": amplitude_id}
            transform_single_record(event, mappings, memo)
    assert len(converted) == len(users)


@pytest.fixture
def small_memo_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(UserPropertiesMemo, "REST_WINDOWS", 2)


def _city(memo: UserPropertiesMemo, mappings: FieldMappings, ehr_id: str, city: str) -> Any:
    return transform_single_record(make_event(ehr_id=ehr_id, city=city), mappings, memo).changeable[1]


@pytest.mark.usefixtures("small_memo_windows")
def test_a_memo_without_hits_rests_long_before_it_is_full_then_remembers_again(
    mappings: FieldMappings,
) -> None:
    memo = UserPropertiesMemo(max_users=1000, window=10)
    first = [_city(memo, mappings, f"E{n}", f"c{n}") for n in range(10)]
    assert (memo.resting, len(memo)) == (True, 0)
    resting = [_city(memo, mappings, f"E{n}", f"r{n}") for n in range(20)]
    assert (memo.resting, len(memo)) == (False, 0)
    _city(memo, mappings, "E0", "again")
    assert len(memo) == 1
    assert first == [f"c{n}" for n in range(10)]
    assert resting == [f"r{n}" for n in range(20)]


@pytest.mark.usefixtures("small_memo_windows")
def test_a_memo_keeps_remembering_while_users_repeat_even_when_it_overflows(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo(max_users=2, window=10)
    for n in range(3):
        _city(memo, mappings, f"E{n}", "Kazan")
    assert [_city(memo, mappings, "E2", "Kazan") for _ in range(30)] == ["Kazan"] * 30
    assert (memo.resting, len(memo)) == (False, 1)


@pytest.mark.usefixtures("small_memo_windows")
def test_a_memo_rests_on_a_window_just_under_the_hit_share(mappings: FieldMappings) -> None:
    """One hit in a window of ten is under 15 %; two are over it."""
    memo = UserPropertiesMemo(max_users=1000, window=10)
    for n in range(9):
        _city(memo, mappings, f"E{n}", "Kazan")
    _city(memo, mappings, "E0", "Kazan")
    assert memo.resting
    memo = UserPropertiesMemo(max_users=1000, window=10)
    for n in range(8):
        _city(memo, mappings, f"E{n}", "Kazan")
    _city(memo, mappings, "E0", "Kazan")
    _city(memo, mappings, "E1", "Kazan")
    assert not memo.resting


def _converting(mappings: FieldMappings, reads: list[bytes] | None = None) -> Any:
    """``user_properties`` text into values, as the decoder's reader does (each text noted in ``reads``)."""

    def convert(text: bytes) -> Any:
        if reads is not None:
            reads.append(text)
        return transform_user_properties(records.read_user_properties(orjson.loads(text)), mappings)

    return convert


def _text_city(memo: UserPropertiesMemo, mappings: FieldMappings, amplitude_id: int, text: bytes) -> Any:
    return memo.transform_text(text, amplitude_id, _converting(mappings))[2][1]


def test_a_text_memo_converts_a_user_s_repeated_text_once(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo()
    reads: list[bytes] = []
    convert = _converting(mappings, reads)

    first = memo.transform_text(b'{"ehr_id":"E1","city":"Kazan"}', 7, convert)
    again = memo.transform_text(b'{"ehr_id":"E1","city":"Kazan"}', 7, convert)
    spaced = memo.transform_text(b'{"ehr_id":"E1", "city":"Kazan"}', 7, convert)
    other_user = memo.transform_text(b'{"ehr_id":"E1","city":"Kazan"}', 8, convert)

    assert again is first
    assert spaced == other_user == first and spaced is not first
    assert len(reads) == 3


def test_a_text_memo_tells_numbers_apart_by_their_text(mappings: FieldMappings) -> None:
    """1, true and 1.0 are equal in Python; a bool column takes the first two and refuses the third."""
    memo, convert = UserPropertiesMemo(), _converting(mappings)
    converted = [memo.transform_text(text, 7, convert) for text in (b'{"premium":1}', b'{"premium":true}')]
    assert [values[2][2] for values in converted] == [True, True]
    with pytest.raises(ValueConversionError, match="expected a boolean, got a number"):
        memo.transform_text(b'{"premium":1.0}', 7, convert)


@pytest.mark.usefixtures("small_memo_windows")
def test_a_text_memo_rests_like_a_snapshot_memo(mappings: FieldMappings) -> None:
    memo = UserPropertiesMemo(max_users=1000, window=10)
    first = [_text_city(memo, mappings, n, b'{"city":"c%d"}' % n) for n in range(10)]
    assert (memo.resting, len(memo)) == (True, 0)
    assert first == [f"c{n}" for n in range(10)]
