"""On the simulator's week, ``propose`` arrives at the shipped ``field_mappings.yaml``: the same
types and regexes for every key, the same sections except where the week cannot tell."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from amplitude_pipeline.transform.mapping import FieldMappings, load_field_mappings
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS

from .support import run, simulator_week

WEEK = date(2024, 1, 8)

# The simulator never changes these per user (amplitude_simulator/data.py, _apply_change: app
# upgrades, moves, premium toggles, weight changes, birthdays): the week shows each user's one
# value, so the data says permanent. The shipped mapping keeps them changeable because people do
# change language, notification settings and (children) height: knowledge the data cannot hold.
UNCHANGED_IN_THE_SIMULATOR = {"language", "notifications_enabled", "height"}


@pytest.fixture(scope="module")
def week_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulator_week(tmp_path_factory.mktemp("simulator") / f"{WEEK}.jsonl.gz", WEEK)


@pytest.fixture(scope="module")
def proposed(week_file: Path) -> FieldMappings:
    result = run("propose", week_file, "--identity", "ehr_id")
    assert result.code == 0, result.stderr
    return result.mapping()


def columns_by_source(mappings: FieldMappings) -> dict[str, tuple[str, str, str | None]]:
    return {column.source: (section, column.type, column.regex) for section, column in mappings.sections()}


def test_every_shipped_column_gets_its_type_and_regex(proposed: FieldMappings) -> None:
    shipped = columns_by_source(load_field_mappings(DEFAULT_MAPPINGS))
    found = columns_by_source(proposed)

    assert {key: found[key][1:] for key in shipped} == {key: shipped[key][1:] for key in shipped}
    assert found["age"][1:] == ("int", r"^\s*(\d+)")


def test_sections_match_but_for_what_the_simulator_never_changes(proposed: FieldMappings) -> None:
    shipped = columns_by_source(load_field_mappings(DEFAULT_MAPPINGS))
    found = columns_by_source(proposed)

    differing = {key for key in shipped if found[key][0] != shipped[key][0]}
    assert differing == UNCHANGED_IN_THE_SIMULATOR
    assert all(found[key][0] == "permanent" for key in differing)


def test_identity_and_the_sdk_keys(proposed: FieldMappings) -> None:
    shipped = load_field_mappings(DEFAULT_MAPPINGS)
    found = columns_by_source(proposed)

    assert proposed.identity_key == shipped.identity_key == "ehr_id"
    # The shipped mapping ignores the SDK's click ids and last-touch keys by choice (nobody
    # analyses them); CONTRACT §9 lets propose ignore only a key no type fits, and these are text
    # (gclid is always null in the simulator: nothing says it is not). So each one the week
    # carries is proposed as a str column, the ones it does not carry not at all.
    sdk_keys_in_the_week = {key for key in shipped.ignore if key in found}
    assert sdk_keys_in_the_week >= {"initial_gclid", "utm_source", "referrer", "gclid"}
    assert {found[key][1:] for key in sdk_keys_in_the_week} == {("str", None)}
    assert proposed.ignore == frozenset()
    assert set(found) == sdk_keys_in_the_week | set(columns_by_source(shipped))


def test_column_names_are_the_keys(proposed: FieldMappings) -> None:
    # The shipped file renames some columns (premium → is_premium, weight → weight_kg, height →
    # height_cm): a choice of names, not something the data says. propose keeps the key.
    assert all(column.name == column.source for _, column in proposed.sections())
