"""Loading and validating field_mappings.yaml: each bad file names the entry at fault."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from amplitude_pipeline.transform.mapping import (
    FieldMappings,
    MappingFileError,
    load_field_mappings,
    parse_field_mappings,
)

DEFAULT_MAPPING_FILE = Path(__file__).resolve().parents[2] / "field_mappings.yaml"


def write_mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "field_mappings.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str) -> FieldMappings:
    return load_field_mappings(write_mapping(tmp_path, text))


def test_default_mapping_file_loads() -> None:
    mappings = load_field_mappings(DEFAULT_MAPPING_FILE)

    assert mappings.identity_key == "ehr_id"
    assert [c.name for c in mappings.permanent][:3] == ["gender", "birth_date", "registration_date"]
    assert mappings.changeable[0].name == "age"
    assert {"premium", "weight", "height", "initial_gclid", "ehr_id"} <= mappings.known_keys
    assert mappings.permanent[0].value_map == {"м": "male", "ж": "female", "M": "male", "F": "female"}


def test_column_options_default_to_str_and_the_column_name(tmp_path: Path) -> None:
    mappings = load_text(
        tmp_path,
        """
        identity: {ehr_id: ehr_id}
        permanent:
          city: {}
          country:
        changeable:
          is_premium: {source: premium, type: bool}
        """,
    )
    city, country = mappings.permanent
    assert (city.source, city.type, city.regex, city.value_map) == ("city", "str", None, None)
    assert (country.source, country.type) == ("country", "str")
    assert mappings.changeable[0].source == "premium"


def test_columns_keep_the_order_of_the_file(tmp_path: Path) -> None:
    mappings = load_text(
        tmp_path,
        """
        identity: {ehr_id: ehr_id}
        changeable: {zeta: {}, alpha: {}, mid: {}}
        """,
    )
    assert [c.name for c in mappings.changeable] == ["zeta", "alpha", "mid"]


@pytest.mark.parametrize(
    ("body", "expected_message"),
    [
        pytest.param(
            "identity: {ehr_id: ehr_id}\npermanents: {}\n",
            "field_mappings.yaml: permanents: unknown section",
            id="unknown-section",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: int, regexp: x}\n",
            "field_mappings.yaml: changeable.age.regexp: unknown option",
            id="unknown-option",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: integer}\n",
            "field_mappings.yaml: changeable.age.type: unknown type 'integer' "
            "(expected one of str, int, float, bool, date, datetime)",
            id="unknown-type",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  a: {source: x}\n  b: {source: x}\n",
            "field_mappings.yaml: changeable.b.source: key 'x' is already used by changeable.a",
            id="source-twice-in-section",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\npermanent:\n  a: {source: x}\nchangeable:\n  b: {source: x}\n",
            "field_mappings.yaml: changeable.b.source: key 'x' is already used by permanent.a",
            id="source-twice-across-sections",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  patient: {source: ehr_id}\n",
            "field_mappings.yaml: changeable.patient.source: key 'ehr_id' is already used by identity.ehr_id",
            id="source-is-identity-key",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nignore: [city]\nchangeable:\n  city: {}\n",
            "field_mappings.yaml: changeable.city.source: key 'city' is already used by ignore",
            id="source-also-ignored",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nignore: [gclid, gclid]\n",
            "field_mappings.yaml: ignore[1]: key 'gclid' is listed twice",
            id="ignored-twice",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nignore: [ehr_id]\n",
            "field_mappings.yaml: ignore: 'ehr_id' is the identity key",
            id="identity-key-ignored",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  City: {}\n",
            "field_mappings.yaml: changeable.City: column name 'City' is not a plain lower-case SQL",
            id="name-upper-case",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  app-version: {}\n",
            "field_mappings.yaml: changeable.app-version: column name 'app-version' is not a plain",
            id="name-with-dash",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  " + "a" * 64 + ": {}\n",
            "is not a plain lower-case SQL identifier",
            id="name-too-long",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  uuid: {source: device_uuid}\n",
            "field_mappings.yaml: changeable.uuid: column name 'uuid' is reserved for a system column",
            id="name-is-system-column",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\npermanent:\n  city: {}\nchangeable:\n  city: {source: town}\n",
            "field_mappings.yaml: changeable.city: column 'city' is also defined as permanent.city",
            id="name-in-both-sections",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: int, regex: '(\\d+'}\n",
            "field_mappings.yaml: changeable.age.regex: regex '(\\\\d+' does not compile",
            id="regex-does-not-compile",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  is_premium: {type: bool, value_map: {vip: maybe}}\n",
            "field_mappings.yaml: changeable.is_premium.value_map['vip']: target 'maybe' cannot become bool",
            id="value-map-target-not-castable",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  flag: {value_map: {yes: 1}}\n",
            "field_mappings.yaml: changeable.flag.value_map: key True was read by YAML as a boolean",
            id="value-map-key-is-yaml-boolean",
        ),
        pytest.param(
            "ignore: [gclid]\n",
            "field_mappings.yaml: identity.ehr_id: missing",
            id="identity-missing",
        ),
        pytest.param(
            "identity: ehr_id\n",
            "field_mappings.yaml: identity: expected a mapping like {ehr_id: ehr_id}, got 'ehr_id'",
            id="identity-not-a-mapping",
        ),
        pytest.param(
            "identity: {ehr_id: 5}\n",
            "field_mappings.yaml: identity.ehr_id: expected a user_properties key, got 5",
            id="identity-key-not-a-string",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nignore: initial_gclid\n",
            "field_mappings.yaml: ignore: expected a list of user_properties keys, got 'initial_gclid'",
            id="ignore-not-a-list",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nignore: [gclid, 5]\n",
            "field_mappings.yaml: ignore[1]: expected a user_properties key, got 5",
            id="ignored-key-not-a-string",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\npermanent:\n  123: {type: int}\n",
            "field_mappings.yaml: permanent.123: column name must be a plain lower-case SQL identifier (a string)",
            id="name-not-a-string",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\npermanent:\n  gender: {regex: 5}\n",
            "field_mappings.yaml: permanent.gender.regex: Input should be a valid string",
            id="option-of-the-wrong-type",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  a: &int {type: int}\n  b: {<<: *int, type: str, type: int}\n",
            "found duplicate key 'type'",
            id="duplicate-yaml-key-after-a-merge-key",
        ),
        pytest.param(
            "identity: {user: ehr_id}\n",
            "field_mappings.yaml: identity.user: unknown option (expected ehr_id)",
            id="identity-without-ehr-id",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  age: int\n",
            "field_mappings.yaml: changeable.age: expected a mapping of options",
            id="column-not-a-mapping",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable: [age, city]\n",
            "field_mappings.yaml: changeable: expected a mapping of column name to options, got a list",
            id="section-not-a-mapping",
        ),
        pytest.param(
            "- identity\n- ignore\n",
            "field_mappings.yaml: top level: expected a mapping of sections",
            id="top-level-not-a-mapping",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: int}\n  age: {type: str}\n",
            "found duplicate key 'age'",
            id="duplicate-yaml-key",
        ),
        pytest.param(
            "identity: {ehr_id: ehr_id\n",
            "field_mappings.yaml: not valid YAML",
            id="yaml-syntax-error",
        ),
    ],
)
def test_bad_mapping_file_is_rejected_naming_the_entry(
    tmp_path: Path, body: str, expected_message: str
) -> None:
    path = write_mapping(tmp_path, body)
    with pytest.raises(MappingFileError) as raised:
        load_field_mappings(path)
    assert str(path) in str(raised.value)
    assert expected_message.replace("field_mappings.yaml", str(path)) in str(raised.value)


def test_parse_names_the_given_source_in_errors() -> None:
    with pytest.raises(MappingFileError, match=r"^config/mappings\.yaml: identity\.ehr_id: missing"):
        parse_field_mappings({"identity": {}}, source_name="config/mappings.yaml")


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MappingFileError, match="top level: the file is empty"):
        load_text(tmp_path, "")


def test_value_map_numeric_keys_match_as_their_text(tmp_path: Path) -> None:
    mappings = load_text(
        tmp_path,
        """
        identity: {ehr_id: ehr_id}
        changeable:
          tier: {type: str, value_map: {1: basic, 2: pro}}
        """,
    )
    assert mappings.changeable[0].converter(2) == "pro"
    assert mappings.changeable[0].converter("1") == "basic"


def test_yaml_merge_keys_share_options_between_columns(tmp_path: Path) -> None:
    mappings = load_text(
        tmp_path,
        r"""
        identity: {ehr_id: ehr_id}
        changeable:
          age: &leading_number {type: int, regex: '^\s*(\d+)'}
          height_cm: {<<: *leading_number, source: height}
        """,
    )
    (_, height) = mappings.changeable
    assert (height.source, height.type, height.converter("180 cm")) == ("height", "int", 180)


def test_value_map_targets_yaml_reads_as_dates_and_datetimes_are_cast(tmp_path: Path) -> None:
    mappings = load_text(
        tmp_path,
        """
        identity: {ehr_id: ehr_id}
        permanent:
          birth_date: {type: date, value_map: {unknown: 1900-01-01}}
          registered_at: {type: datetime, value_map: {legacy: 2020-01-01 00:00:00}}
        """,
    )
    birth_date, registered_at = mappings.permanent
    assert birth_date.converter("unknown") == date(1900, 1, 1)
    assert registered_at.converter("legacy") == datetime(2020, 1, 1, tzinfo=UTC)


def test_a_file_that_is_not_utf8_is_rejected_naming_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "field_mappings.yaml"
    path.write_bytes(
        "identity: {ehr_id: ehr_id}\npermanent:\n  gender: {value_map: {м: male}}\n".encode("cp1251")
    )
    with pytest.raises(MappingFileError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(byte 61\)$"):
        load_field_mappings(path)
