"""``python -m amplitude_pipeline.mapping``: arguments, exit codes 0/1/2, stdout only the result,
and S3 sources on the local stack."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from amplitude_pipeline_tests.support import REPO_ROOT, stack_s3_client

from .support import event, run, write_events


@pytest.fixture
def week(tmp_path: Path) -> Path:
    records = [
        event(0, ehr_id="E1", city="Kazan", age="34 years"),
        event(1, ehr_id="E1", city="Ufa", age=35),
        event(2, amplitude_id=2, ehr_id="E2", city="Kazan", age="41"),
    ]
    return write_events(tmp_path / "2024-01-08.jsonl.gz", records)


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "field_mappings.yaml"
    path.write_text("identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: int, regex: '^\\s*(\\d+)'}\n")
    return path


def test_propose_prints_only_a_mapping_that_loads(week: Path) -> None:
    result = run("propose", week, "--identity", "ehr_id")

    assert result.code == 0
    mappings = result.mapping()
    assert [(section, column.name, column.type) for section, column in mappings.sections()] == [
        ("changeable", "city", "str"),
        ("changeable", "age", "int"),
    ]
    assert result.stderr == ""


def test_without_identity_the_candidates_are_named_and_nothing_is_guessed(week: Path) -> None:
    result = run("propose", week)

    assert result.code == 0
    proposed = result.yaml()
    assert "identity" not in proposed  # it does not load until someone chooses
    assert "#   'ehr_id'" in result.stdout
    assert proposed["permanent"]["user_ehr_id"] == {"source": "ehr_id", "type": "str"}


def test_validate_exits_0_on_a_clean_file_and_prints_nothing(week: Path, mapping: Path) -> None:
    mapping.write_text(mapping.read_text() + "  city: {}\n")
    result = run("validate", "--mapping", mapping, week)
    assert (result.code, result.stdout) == (0, "")
    assert "3 lines in 1 file; 0 unknown keys" in result.stderr


def test_validate_exits_1_with_one_line_per_finding(week: Path, mapping: Path, tmp_path: Path) -> None:
    other = write_events(
        tmp_path / "other.jsonl.gz", [event(0, city="Kazan"), event(1, mood="calm", age="old")]
    )
    result = run("validate", "--mapping", mapping, week, other)

    assert result.code == 1
    assert result.stdout.splitlines() == [
        f"user_properties['city']: unknown key in 4 records, first: {week}, line 0: add it to "
        "field_mappings.yaml (ignore, or the source of a column)",
        f"user_properties['mood']: unknown key in 1 record, first: {other}, line 1: add it to "
        "field_mappings.yaml (ignore, or the source of a column)",
        "user_properties['age'] fails its conversion (column changeable.age, type int) in 1 record, "
        f"first: {other}, line 1: does not match regex '^\\\\s*(\\\\d+)'",
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["propose"],
        ["validate", "WEEK"],  # no --mapping
        ["propose", "WEEK", "--identity", "ehr_id", "--against", "MAPPING"],
        ["propose", "WEEK", "--unknown-option"],
        ["frobnicate", "WEEK"],
    ],
)
def test_usage_errors_exit_2(arguments: list[str], week: Path, mapping: Path) -> None:
    result = run(*[{"WEEK": week, "MAPPING": mapping}.get(argument, argument) for argument in arguments])
    assert (result.code, result.stdout) == (2, "")
    assert "usage:" in result.stderr


@pytest.mark.parametrize("command", ["propose", "validate"])
def test_a_source_that_names_nothing_exits_2(command: str, mapping: Path, tmp_path: Path) -> None:
    plain = tmp_path / "events.jsonl"
    plain.write_text("{}\n")
    mapping_options = ["--against", mapping] if command == "propose" else ["--mapping", mapping]
    for source, says in [(tmp_path / "missing.jsonl.gz", "no such file"), (plain, "not an event file")]:
        result = run(command, *mapping_options, source)
        assert (result.code, result.stdout) == (2, "")
        assert f"{source}: {says}" in result.stderr


@pytest.mark.parametrize("command", ["propose", "validate"])
def test_a_mapping_file_that_does_not_load_exits_2_naming_the_entry(
    command: str, week: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: integer}\n")
    option = "--against" if command == "propose" else "--mapping"
    result = run(command, *([week, option, broken] if command == "propose" else [option, broken, week]))
    assert (result.code, result.stdout) == (2, "")
    assert "changeable.age.type: unknown type 'integer'" in result.stderr


def test_the_module_runs_as_a_program(week: Path, mapping: Path) -> None:
    proposed = subprocess.run(
        [sys.executable, "-m", "amplitude_pipeline.mapping", "propose", str(week), "--identity", "ehr_id"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    validated = subprocess.run(
        [
            sys.executable,
            "-m",
            "amplitude_pipeline.mapping",
            "validate",
            "--mapping",
            str(mapping),
            str(week),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proposed.returncode == 0, proposed.stderr
    assert set(yaml.safe_load(proposed.stdout)) == {"identity", "changeable"}
    assert validated.returncode == 1
    assert validated.stdout.startswith("user_properties['city']: unknown key in 3 records")


# -- S3 on the local stack --------------------------------------------------------------------


@pytest.fixture
def s3_prefix(stack: None) -> Iterator[str]:
    """A fresh prefix in the stack's bucket, emptied afterwards."""
    client, bucket = stack_s3_client(), os.environ["S3_BUCKET"]
    prefix = f"test-{uuid.uuid4().hex[:12]}/mapping/"
    yield prefix
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    for item in listed:
        client.delete_object(Bucket=bucket, Key=item["Key"])


def put(key: str, body: bytes) -> None:
    stack_s3_client().put_object(Bucket=os.environ["S3_BUCKET"], Key=key, Body=body)


@pytest.mark.integration
def test_s3_sources_an_object_and_every_event_file_under_a_prefix(
    s3_prefix: str, week: Path, mapping: Path
) -> None:
    bucket = os.environ["S3_BUCKET"]
    put(f"{s3_prefix}2024-01-08.jsonl.gz", week.read_bytes())
    put(f"{s3_prefix}amplitude/187520_2024-01-15_3#0.json.gz", gzip.compress(b'{"x": 1}\n'))  # not an event
    put(f"{s3_prefix}_SUCCESS", b"")  # a marker, not an event file: skipped
    whole = f"s3://{bucket}/{s3_prefix}"

    one = run("propose", f"{whole}2024-01-08.jsonl.gz", "--identity", "ehr_id")
    everything = run("propose", whole, "--identity", "ehr_id")
    validated = run("validate", "--mapping", mapping, f"{whole}2024-01-08.jsonl.gz")

    assert one.code == 0, one.stderr
    assert one.mapping().known_keys == {"ehr_id", "city", "age"}
    assert everything.code == 1  # the second file's line is no event: named, nothing proposed
    assert everything.stdout == ""
    assert (
        f"{whole}amplitude/187520_2024-01-15_3#0.json.gz, line 0: record['uuid']: missing"
        in everything.stderr
    )
    assert validated.code == 1
    assert f"first: {whole}2024-01-08.jsonl.gz, line 0" in validated.stdout


@pytest.mark.integration
def test_s3_sources_that_name_nothing_exit_2(s3_prefix: str, mapping: Path) -> None:
    bucket = os.environ["S3_BUCKET"]
    for source, says in [
        (f"s3://{bucket}/{s3_prefix}missing.jsonl.gz", "no such object"),
        (f"s3://{bucket}/{s3_prefix}", "no .json.gz or .jsonl.gz object under this prefix"),
        (f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/events/", "no such bucket"),
    ]:
        result = run("validate", "--mapping", mapping, source)
        assert (result.code, result.stdout) == (2, ""), result.stderr
        assert f"{source}: {says}" in result.stderr


@pytest.mark.integration
def test_an_s3_object_that_is_not_gzip_is_named_with_its_line(s3_prefix: str, mapping: Path) -> None:
    bucket = os.environ["S3_BUCKET"]
    put(f"{s3_prefix}plain.jsonl.gz", b'{"uuid": "x"}\n')
    source = f"s3://{bucket}/{s3_prefix}plain.jsonl.gz"

    result = run("validate", "--mapping", mapping, source)

    assert result.code == 1
    assert result.stdout.startswith(f"{source}, line 0: could not read the object:")
    assert "not gzip-compressed" in result.stdout
