"""The contract between the simulator and field_mappings.yaml (CONTRACT §5).

The pipeline stops on any ``user_properties`` key the mapping does not know and on any value
its conversion rules reject, so the simulator must only produce known keys and convertible
values — and should exercise every column and every accepted representation. The small
converter below restates §5's rules independently of the pipeline's implementation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from amplitude_simulator.data import SimulatorConfig, expected_lines, population

MAPPING_PATH = Path(__file__).resolve().parents[2] / "field_mappings.yaml"
MAPPING: dict[str, Any] = yaml.safe_load(MAPPING_PATH.read_text(encoding="utf-8"))
COLUMNS: dict[str, dict[str, Any]] = {
    name: spec or {} for section in ("permanent", "changeable") for name, spec in MAPPING[section].items()
}
SOURCES: dict[str, dict[str, Any]] = {spec.get("source", name): spec for name, spec in COLUMNS.items()}
IDENTITY_KEYS = set(MAPPING["identity"].values())
KNOWN_KEYS = IDENTITY_KEYS | set(MAPPING["ignore"]) | set(SOURCES)

CONFIG = SimulatorConfig(users=600)


def _all_properties() -> Iterator[dict[str, Any]]:
    """Every user_properties snapshot: all versions of a large population, plus real events."""
    for user in population(CONFIG):
        for version in user.versions:
            yield version.user_properties
    for line in expected_lines(SimulatorConfig(), date(2024, 1, 8)):
        yield orjson.loads(line)["user_properties"]


def _convert(value: Any, spec: dict[str, Any]) -> Any:
    """CONTRACT §5: null; regex; value_map; cast. Raises ValueError when the pipeline would."""
    if value is None:
        return None
    if "regex" in spec:
        match = re.search(spec["regex"], str(value))
        if match is None:
            raise ValueError(f"{value!r} does not match {spec['regex']!r}")
        value = match.group(1) if match.groups() else match.group(0)
    if isinstance(value, str) and value in spec.get("value_map", {}):
        value = spec["value_map"][value]
    kind = spec.get("type", "str")
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    if value == "":
        return None
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{value!r} is not an int")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number")
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1) and isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"{value!r} is not a bool")
    if kind == "date":
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return date.fromisoformat(value)
        return datetime.strptime(value, "%d.%m.%Y").date()
    raise AssertionError(f"type {kind!r} is not used by the mapping")


def test_every_user_properties_key_is_known_to_the_mapping() -> None:
    unknown = {key for properties in _all_properties() for key in properties} - KNOWN_KEYS
    assert unknown == set()


def test_the_simulator_exercises_every_mapped_column_and_some_ignored_keys() -> None:
    with_values = {
        key for properties in _all_properties() for key, value in properties.items() if value is not None
    }
    assert set(SOURCES) <= with_values
    assert with_values >= IDENTITY_KEYS
    assert {"initial_gclid", "utm_source", "referrer"} & with_values


def test_every_value_converts_under_the_default_mapping() -> None:
    converted: set[str] = set()
    for properties in _all_properties():
        for key, value in properties.items():
            if key in SOURCES and value is not None:
                _convert(value, SOURCES[key])  # raises ValueError where the pipeline would fail
                converted.add(key)
    assert converted == set(SOURCES)


def test_genders_map_to_male_or_female() -> None:
    genders = {
        _convert(properties["gender"], SOURCES["gender"])
        for properties in _all_properties()
        if properties.get("gender") is not None
    }
    assert genders == {"male", "female"}


@pytest.mark.parametrize(
    ("key", "representations"),
    [
        ("gender", [lambda v: v in ("м", "ж"), lambda v: v in ("male", "female"), lambda v: v in ("M", "F")]),
        ("birth_date", [lambda v: "-" in v, lambda v: "." in v]),
        ("age", [lambda v: isinstance(v, int), lambda v: isinstance(v, str) and v.endswith(" years")]),
        (
            "premium",
            [
                lambda v: isinstance(v, bool),
                lambda v: v in ("yes", "no", "Yes", "No"),
                lambda v: isinstance(v, int) and not isinstance(v, bool),
            ],
        ),
        ("weight", [lambda v: isinstance(v, float), lambda v: v == ""]),
        ("height", [lambda v: isinstance(v, int)]),
        ("city", [lambda v: v == "Москва", lambda v: v == "Moscow"]),
    ],
)
def test_values_use_the_accepted_representations(key: str, representations: list[Any]) -> None:
    values = [p[key] for p in _all_properties() if p.get(key) is not None]
    for is_representation in representations:
        assert any(is_representation(value) for value in values)


def test_some_users_lack_some_keys_and_some_values_are_null() -> None:
    snapshots = [user.versions[0].user_properties for user in population(CONFIG) if user.ehr_id]
    assert any(set(SOURCES) - set(properties) for properties in snapshots)
    assert any(value is None for properties in snapshots for value in properties.values())
