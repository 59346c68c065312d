"""The loader's reading of an event line (four fields, the rest checked) gives what ``transform_line``
gives: the same record, or the same error with the same message, for every line."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import orjson
import pytest

from amplitude_pipeline.transform import event_decoder
from amplitude_pipeline.transform.event_decoder import EventLineDecoder
from amplitude_pipeline.transform.event_lines import line_failure_message
from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings, load_field_mappings
from amplitude_pipeline.transform.records import UserPropertiesMemo
from amplitude_pipeline_tests.corpus.manifest import load_cases
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS
from amplitude_simulator.data import SimulatorConfig, expected_lines

CASES = load_cases()
SIMULATED = expected_lines(SimulatorConfig(users=50, events_per_day=200), date(2024, 1, 8))


@pytest.fixture(scope="module")
def default_mappings() -> FieldMappings:
    return load_field_mappings(DEFAULT_MAPPINGS)


def outcome(read: Any, line: bytes) -> tuple[str, Any]:
    """A reading's record, or its error as the loader reports it."""
    try:
        return "record", read(line)
    except Exception as error:
        return type(error).__name__, line_failure_message(line, error)


def decoder(mappings: FieldMappings) -> EventLineDecoder:
    return EventLineDecoder(mappings, UserPropertiesMemo())


def assert_same_outcome(lines: list[bytes], mappings: FieldMappings) -> None:
    """Each line through one decoder (its memo warm, as in a load) and through ``transform_line``."""
    reader = decoder(mappings)
    for index, line in enumerate(lines):
        expected = outcome(lambda text: transform_line(text, mappings), line)
        assert outcome(reader.record, line) == expected, f"line {index}: {line[:300]!r}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_corpus_line_reads_as_transform_line_reads_it(
    case: Any, default_mappings: FieldMappings
) -> None:
    assert_same_outcome(case.lines(), default_mappings)


def test_an_ordinary_event_is_read_from_its_four_fields_alone(
    default_mappings: FieldMappings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator's events never need ``transform_line``: the fast reading takes them."""
    expected = [transform_line(line, default_mappings) for line in SIMULATED]

    def refused(line: bytes, mappings: FieldMappings) -> Any:
        raise AssertionError(f"read again: {line[:200]!r}")

    monkeypatch.setattr(event_decoder, "transform_line", refused)
    reader = decoder(default_mappings)
    assert [reader.record(line) for line in SIMULATED] == expected


MUTATIONS = [
    b"\xef\xbb\xbf", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\\ud800", b"\\udc00",
    b"\\ud83d\\ude00", b"1e309", b"-1e309", b"1e308", b"18446744073709551616", b"-9223372036854775809",
    b"1180591620717411303424", b"\t", b"\x00", b"\x7f", b"\x0b", b"NaN", b"Infinity", b"-", b"01", b"1.", b".5",
    b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"\\u00", b"\\u0000", b"true", b"null", b"\r", b" ",
    b"1e-400", b"[" * 1030, b"]" * 1030, b"\\u0075", b'"uuid":"x",', b'"uuid":7,', b'"event_time":null,',
    b'"amplitude_id":1.0,', b'"amplitude_id":"7",', b'"user_properties":{"ehr_id":"E9"},',
    b'"user_properties":[],', b'"ehr_id":12,', b'"age":"1",', b'"age":1.0,', b'"premium":true,', b"1.5", b"-0",
]  # fmt: skip


def mutated(lines: list[bytes], count: int, seed: int) -> list[bytes]:
    """``count`` lines, each one of ``lines`` with one to three bytes or fragments inserted, replaced
    or removed: malformed JSON, wrong types, big numbers, bad UTF-8, duplicate keys."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        line = bytearray(rng.choice(lines))
        for _ in range(rng.randint(1, 3)):
            at, roll = rng.randrange(len(line) + 1), rng.random()
            if roll < 0.5:
                line[at:at] = rng.choice(MUTATIONS)
            elif roll < 0.7 and line:
                line[min(at, len(line) - 1)] = rng.randrange(256)
            elif roll < 0.85:
                del line[at : at + rng.randint(1, 5)]
            else:
                line[at:at] = bytes([rng.randrange(256)])
        result.append(bytes(line))
    return result


def test_mutated_lines_read_as_transform_line_reads_them(default_mappings: FieldMappings) -> None:
    corpus = [line for case in CASES if case.path.suffix == ".jsonl" for line in case.lines() if line.strip()]
    assert_same_outcome(mutated([*corpus, *SIMULATED[:50]], 20_000, seed=2024), default_mappings)


def event_line(**fields: Any) -> bytes:
    event: dict[str, Any] = {
        "$insert_id": "5c1d1a4e-1e53-4b7d-9b1e-0e53e1e53e10",
        "uuid": "00000000-0000-4000-8000-000000000001",
        "event_time": "2024-01-08 10:00:01.000000",
        "amplitude_id": 101,
        "event_properties": {"screen": "home"},
        "user_properties": {"ehr_id": "E1", "gender": "ж", "city": "Казань", "age": "33 years"},
    }
    return orjson.dumps(event | fields)


def edited(old: bytes, new: bytes, count: int = -1) -> bytes:
    return event_line().replace(old, new, count)


EDGE_LINES = {
    "byte-order-mark": b"\xef\xbb\xbf" + event_line(),
    "duplicate-field-first-bad": edited(b'{"', b'{"uuid":"not one","', 1),
    "duplicate-field": edited(b'{"', b'{"uuid":"00000000-0000-4000-8000-000000000009","', 1),
    "duplicate-key": edited(b'"ehr_id":"E1"', b'"ehr_id":"E1","ehr_id":"E2"'),
    "bigint-skipped": edited(b'"screen":"home"', b'"big":1180591620717411303424'),
    "bigint-value": edited(b'"age":"33 years"', b'"age":1180591620717411303424'),
    "infinite-number-skipped": edited(b'"screen":"home"', b'"big":1e309'),
    "invalid-utf8-skipped": edited(b'"home"', b'"\xc0\xaf"'),
    "lone-surrogate-skipped": edited(b'"home"', b'"\\ud800"'),
    "nesting-1024-skipped": edited(b'"home"', b"[" * 1023 + b"]" * 1023),
    "nesting-1025-skipped": edited(b'"home"', b"[" * 1024 + b"]" * 1024),
    "escaped-field-name": edited(b'"uuid"', b'"\\u0075uid"'),
    "two-user-properties": edited(b'"user_properties"', b'"user_properties":7,"user_properties"'),
    "empty-user-properties": edited(b',"user_properties":{', b',"user_properties":{},"x":{'),
    "nul-in-value": edited(b'"E1"', b'"E\\u00001"'),
}


@pytest.mark.parametrize("line", EDGE_LINES.values(), ids=EDGE_LINES.keys())
def test_edge_lines_read_as_transform_line_reads_them(line: bytes, default_mappings: FieldMappings) -> None:
    assert_same_outcome([line, event_line(), line], default_mappings)


def test_a_repeated_snapshot_is_converted_once_and_a_retyped_one_again(
    default_mappings: FieldMappings,
) -> None:
    reader = decoder(default_mappings)
    first = reader.record(event_line())
    again = reader.record(event_line(uuid="00000000-0000-4000-8000-000000000002"))
    retyped = reader.record(event_line(user_properties={"ehr_id": "E1", "gender": "ж", "age": 33}))

    assert again.changeable is first.changeable and again.permanent is first.permanent
    assert retyped.changeable is not first.changeable
    assert retyped == transform_line(
        event_line(user_properties={"ehr_id": "E1", "gender": "ж", "age": 33}), default_mappings
    )
