"""Files that arrive broken get the loader's clear errors, naming file and line (the corpus of
``amplitude_pipeline_tests/corpus``: the same objects, the same expected words)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amplitude_pipeline_tests.corpus.manifest import Case, load_cases
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS

from .support import run

MESSAGE_BOUND = 600
FAILING = [case for case in load_cases() if case.outcome.fails is not None]
# Failures no mapping can avoid: the line is not a record the loader reads, or the object is not
# readable. (The others depend on the mapping: an unknown key, a value its column refuses.)
WHATEVER_THE_MAPPING = {
    "malformed JSON line",
    "expected a JSON object",
    "user_properties",
    "uuid",
    "amplitude_id",
    "event_time",
    "could not read the object",
}
NO_MAPPING_LOADS = [
    case for case in FAILING if case.outcome.fails["message_contains"][0] in WHATEVER_THE_MAPPING
]  # type: ignore[index]


def case_file(case: Case, directory: Path) -> Path:
    path = directory / f"{case.name}.jsonl.gz"
    path.write_bytes(case.object_bytes(case.lines()))
    return path


def the_line_naming(output: str, path: Path, line: int) -> str:
    found = [text for text in output.splitlines() if f"{path}, line {line}" in text]
    assert found, f"no line names {path}, line {line}:\n{output}"
    return found[0]


@pytest.mark.parametrize(
    "case",
    [case for case in FAILING if case.name != "database_refuses_record"],  # a refusal of the DWH's own
    ids=lambda case: case.name,
)
def test_validate_names_file_line_and_cause_as_the_loader_does(case: Case, tmp_path: Path) -> None:
    assert case.outcome.fails is not None
    path = case_file(case, tmp_path)

    result = run("validate", "--mapping", DEFAULT_MAPPINGS, path)

    assert result.code == 1
    reported = the_line_naming(result.stdout, path, case.outcome.fails["line"])
    for words in case.outcome.fails["message_contains"]:
        assert words in reported
    assert len(reported) < MESSAGE_BOUND + len(str(path))


@pytest.mark.parametrize(
    "case",
    NO_MAPPING_LOADS,
    ids=lambda case: case.name,
)
def test_propose_stops_at_lines_no_mapping_can_load(case: Case, tmp_path: Path) -> None:
    assert case.outcome.fails is not None
    path = case_file(case, tmp_path)

    result = run("propose", path, "--identity", "ehr_id")

    assert (result.code, result.stdout) == (1, "")
    reported = the_line_naming(result.stderr, path, case.outcome.fails["line"])
    for words in case.outcome.fails["message_contains"]:
        assert words in reported


def test_a_key_of_a_megabyte_is_named_shortly_and_proposed_nowhere(tmp_path: Path) -> None:
    (case,) = [case for case in FAILING if case.name == "huge_key"]
    path = case_file(case, tmp_path)

    result = run("propose", path, "--identity", "ehr_id")

    assert (result.code, result.stdout) == (1, "")
    reported = the_line_naming(result.stderr, path, 3)
    assert "a key of 1,048,576 characters is too long to name in the mapping" in reported
    assert len(result.stderr) < 2 * MESSAGE_BOUND
