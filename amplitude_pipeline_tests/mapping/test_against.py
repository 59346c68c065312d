"""``propose --against``: only what a mapping lacks, which, pasted in, makes the file validate and
transform cleanly; the key check gets the same snippet from its own single pass."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from amplitude_pipeline.mapping import audit_and_propose
from amplitude_pipeline.storage.s3 import iter_gzip_lines
from amplitude_pipeline.transform.audit import audit_user_properties
from amplitude_pipeline.transform.mapping import parse_mapping_text
from amplitude_pipeline.transform.records import transform_single_record
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS

from .support import event, merge_snippet, run, simulator_week, write_events

# The shipped mapping without city and premium, without initial_gclid among the ignored keys, and
# with age an int without its regex ("34 years" no longer converts).
LACKING = (
    DEFAULT_MAPPINGS.read_text()
    .replace("  city: {type: str}\n", "")
    .replace("  is_premium: {source: premium, type: bool}\n", "")
    .replace("  - initial_gclid\n", "")
    .replace("  age: {type: int, regex: '^\\s*(\\d+)'}\n", "  age: {type: int}\n")
)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulator_week(tmp_path_factory.mktemp("week") / "2024-01-08.jsonl.gz")


@pytest.fixture
def lacking(tmp_path: Path) -> Path:
    path = tmp_path / "field_mappings.yaml"
    path.write_text(LACKING)
    return path


def test_the_mapping_lacks_what_the_test_took_out(week: Path, lacking: Path) -> None:
    result = run("validate", "--mapping", lacking, week)
    assert result.code == 1
    assert {line.split("]")[0] for line in result.stdout.splitlines()} == {
        "user_properties['city'",
        "user_properties['premium'",
        "user_properties['initial_gclid'",
        "user_properties['age'",
    }


def test_the_snippet_holds_only_what_is_missing(week: Path, lacking: Path) -> None:
    result = run("propose", week, "--against", lacking)

    assert result.code == 0, result.stderr
    assert result.yaml() == {
        "permanent": {"initial_gclid": {"type": "str"}},
        "changeable": {
            "city": {"type": "str"},
            "premium": {"type": "bool"},
            "age": {"type": "int", "regex": r"^\s*(\d+)"},
        },
    }
    assert "# replaces changeable.age (int)" in result.stdout


def test_pasted_in_it_makes_the_file_validate_and_transform_cleanly(
    week: Path, lacking: Path, tmp_path: Path
) -> None:
    snippet = run("propose", week, "--against", lacking).stdout
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(merge_snippet(LACKING, snippet))

    assert run("validate", "--mapping", fixed, week).code == 0
    mappings = parse_mapping_text(fixed.read_bytes())
    with week.open("rb") as stream:
        for line in iter_gzip_lines(stream):
            transform_single_record(orjson.loads(line), mappings)
    assert run("propose", week, "--against", fixed).yaml() is None  # nothing left to add


def test_a_failing_value_map_column_is_judged_with_its_value_map(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "identity: {ehr_id: ehr_id}\nchangeable:\n  smoker: {type: bool, value_map: {да: true, нет: false}}\n"
    )
    path = write_events(
        tmp_path / "week.jsonl.gz",
        [event(0, ehr_id="E1", smoker="да"), event(1, ehr_id="E2", smoker="нет"), event(2, smoker="n/a")],
    )

    result = run("propose", path, "--against", mapping)

    # No bool holds "n/a", value_map or not: the fix is text, and the value_map stays.
    assert result.yaml() == {
        "changeable": {"smoker": {"type": "str", "value_map": {"да": True, "нет": False}}}
    }
    assert "the type changes from bool to str" in result.stdout


def test_the_key_check_gets_the_cli_snippet_from_its_own_single_pass(week: Path, lacking: Path) -> None:
    mappings = parse_mapping_text(lacking.read_bytes(), str(lacking))

    with week.open("rb") as stream:
        report, snippet = audit_and_propose(iter_gzip_lines(stream), mappings, str(week))
    with week.open("rb") as stream:
        audited_alone = audit_user_properties(iter_gzip_lines(stream), mappings)

    assert report == audited_alone
    assert snippet == run("propose", week, "--against", lacking).stdout


def test_a_passing_week_gets_nothing_to_add(week: Path) -> None:
    mappings = parse_mapping_text(DEFAULT_MAPPINGS.read_bytes())
    with week.open("rb") as stream:
        report, snippet = audit_and_propose(iter_gzip_lines(stream), mappings, str(week))
    assert report.passed
    assert yaml.safe_load(snippet) is None
    assert "Nothing to add" in snippet
