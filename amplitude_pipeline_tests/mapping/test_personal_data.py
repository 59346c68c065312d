"""Values may be personal data: no value of the sources reaches the output unless --samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import event, run, write_events

NAME, PHONE, BIRTH = "Иванова Мария Петровна", "+7 916 123-45-67", "1987-03-14"
VALUES = (NAME, PHONE, BIRTH, "E-77")


@pytest.fixture
def week(tmp_path: Path) -> Path:
    records = [
        event(0, ehr_id="E-77", full_name=NAME, phone=PHONE, birth=BIRTH, gender="ж"),
        event(1, ehr_id="E-77", full_name=NAME, phone=PHONE, birth=BIRTH, gender="ж"),
        event(2, amplitude_id=2, gender="м"),
    ]
    return write_events(tmp_path / "week.jsonl.gz", records)


@pytest.fixture
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text("identity: {ehr_id: ehr_id}\npermanent:\n  phone: {type: int}\n  gender: {}\n")
    return path


def shown(output: str) -> set[str]:
    return {value for value in VALUES if value in output}


@pytest.mark.parametrize("identity", [["--identity", "ehr_id"], []])
def test_propose_shows_no_value_without_samples(week: Path, identity: list[str]) -> None:
    result = run("propose", week, *identity)
    assert result.code == 0
    assert shown(result.stdout + result.stderr) == set()


def test_propose_shows_samples_when_asked(week: Path) -> None:
    result = run("propose", week, "--identity", "ehr_id", "--samples")
    assert shown(result.stdout) == {NAME, PHONE, BIRTH}


def test_against_shows_neither_new_keys_values_nor_failed_values_without_samples(
    week: Path, mapping: Path
) -> None:
    result = run("propose", week, "--against", mapping)
    assert "phone" in result.yaml()["permanent"]  # its failure is reported...
    assert shown(result.stdout + result.stderr) == set()  # ...without the values that failed
    assert "(--samples shows the values that failed)" in result.stdout


def test_against_shows_failed_values_when_asked(week: Path, mapping: Path) -> None:
    result = run("propose", week, "--against", mapping, "--samples")
    assert f"values that failed: '{PHONE}'" in result.stdout


def test_validate_names_keys_never_values(week: Path, mapping: Path) -> None:
    result = run("validate", "--mapping", mapping, week)
    assert result.code == 1
    assert "user_properties['phone'] fails its conversion" in result.stdout
    assert shown(result.stdout + result.stderr) == set()
