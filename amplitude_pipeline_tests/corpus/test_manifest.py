"""The corpus itself, without services: every case file has its expectation, and each case's
object is what its entry says (so that a case fails in the loader, not in its own making)."""

import gzip
import json
import zlib

import pytest

from amplitude_pipeline_tests.corpus.manifest import CASES_DIR, Case, ManifestError, Outcome, load_cases

CASES = load_cases()


def test_every_case_file_has_an_entry_and_every_entry_a_file():
    names = {case.name for case in CASES}
    files = {path.stem for path in CASES_DIR.iterdir() if path.suffix in {".jsonl", ".py"}}
    assert names == files
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_failing_line_exists_and_the_lines_before_it_are_ordinary(case: Case):
    lines = case.lines()
    for outcome in (case.outcome, case.tmp):
        if outcome is None or outcome.fails is None:
            continue
        line = outcome.fails["line"]
        # A failure after the last line is only possible in the gzip layer.
        assert 0 <= line < len(lines) or (case.gzip is not None and line == len(lines))
        for before in lines[:line]:
            assert not before.strip() or isinstance(json.loads(before), dict), before[:80]


@pytest.mark.parametrize("case", [case for case in CASES if case.tmp is not None], ids=lambda case: case.name)
def test_tmp_cases_are_rows_a_jsonb_column_can_hold(case: Case):
    for line in case.lines():
        if line.strip():
            record = json.loads(line)
            assert {"uuid", "event_time", "user_properties"} <= set(record)
            assert "\\u0000" not in line.decode()


def test_a_truncated_object_holds_the_lines_before_the_cut_and_part_of_the_next():
    case = next(case for case in CASES if case.name == "gzip_truncated")
    lines = case.lines()
    body = case.object_bytes(lines)
    text = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(body)
    whole = b"".join(line + b"\n" for line in lines[:3])
    assert text.startswith(whole)
    assert lines[3].startswith(text[len(whole) :])
    assert len(text) > len(whole)
    with pytest.raises(EOFError):
        gzip.decompress(body)


def test_members_split_mid_line_decompress_to_the_file():
    case = next(case for case in CASES if case.name == "gzip_members_split_mid_line")
    lines = case.lines()
    body = case.object_bytes(lines)
    assert body.count(b"\x1f\x8b\x08") == 4
    assert gzip.decompress(body) == b"".join(line + b"\n" for line in lines)


def test_an_entry_must_say_what_happens():
    with pytest.raises(ManifestError, match="exactly one of fails and loads"):
        Outcome.parse("case", {"xfail": "why"})
