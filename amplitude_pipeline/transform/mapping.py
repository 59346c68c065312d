"""The mapping from Amplitude ``user_properties`` keys to table columns (CONTRACT §5).

:func:`load_field_mappings` reads and validates ``field_mappings.yaml``; every mistake in
the file becomes a :class:`MappingFileError` naming the entry, so a bad file never gets as far
as the data. The code location reads it through
``amplitude_pipeline.storage.field_mappings.load_field_mappings_once`` when it loads (a broken
file stops it loading), and runs read it again there, parsed once per content. The resulting
:class:`FieldMappings` carries, per source key, a ready-built converter, so that
transforming a record costs one dict lookup and one call per key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable
from functools import cached_property
from typing import Any, Final, NamedTuple, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from amplitude_pipeline.text import short_repr, shorten
from amplitude_pipeline.transform.casts import (
    CASTS,
    COLUMN_TYPES,
    ColumnType,
    ConversionFailure,
    json_text,
)

__all__ = [
    "SYSTEM_COLUMNS",
    "ColumnMapping",
    "ColumnRoute",
    "ColumnType",
    "ConversionFailure",
    "Converter",
    "FieldMappings",
    "MappingFileError",
    "load_field_mappings",
    "parse_field_mappings",
    "parse_mapping_text",
]

SYSTEM_COLUMNS: Final = frozenset({"ehr_id", "amplitude_id", "uuid", "event_time", "loaded_at"})
SECTIONS: Final = ("identity", "ignore", "permanent", "changeable")
COLUMN_OPTIONS: Final = ("source", "type", "regex", "value_map")

_SQL_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MISSING: Final = object()

Converter = Callable[[Any], Any]


def build_converter(
    column_type: ColumnType,
    pattern: re.Pattern[str] | None,
    value_map: dict[str, Any] | None,
    remembered: dict[str, Any] | None = None,
) -> Converter:
    """Compose null handling, ``regex``, ``value_map`` and the cast into one function, which
    remembers what it made of the strings it saw, in ``remembered`` when given
    (:func:`remembering_strings`).

    The value_map targets are cast here, once, so a hit costs a dict lookup. Without
    regex and value_map the converter is the bare cast.
    """
    return remembering_strings(_build_converter(column_type, pattern, value_map), remembered=remembered)


REMEMBERED_STRINGS_PER_COLUMN: Final = 10_000


def remembering_strings(
    convert: Converter, limit: int = REMEMBERED_STRINGS_PER_COLUMN, remembered: dict[str, Any] | None = None
) -> Converter:
    """``convert``, with its results for the first ``limit`` distinct strings remembered (in
    ``remembered``, which a caller may look into first, and save the call).

    A column mostly holds a few values ("Kazan", "м", "34 years", a birth date shared by many
    users), and converting one (a regex, a date, a value map) costs several times a dict
    lookup; each event of a week carries every one of them again. Remembering also makes equal
    strings one object: a batch keeps its records until it is written, and on a week of many
    light users every event's own copy of "Kazan" was ~50 MiB a batch. Only strings are
    remembered (``1``, ``1.0`` and ``true`` are equal in Python but convert differently), and
    only results: a value that fails converts, and fails, again. Past ``limit`` distinct strings
    (a column of free text) results come as they are made, so memory stays bounded.
    """
    known: dict[str, Any] = {} if remembered is None else remembered

    def convert_remembering(value: Any) -> Any:
        if type(value) is not str:
            return convert(value)
        result = known.get(value, _MISSING)
        if result is _MISSING:
            result = convert(value)
            if len(known) < limit:
                known[value] = result
        return result

    return convert_remembering


def _build_converter(
    column_type: ColumnType,
    pattern: re.Pattern[str] | None,
    value_map: dict[str, Any] | None,
) -> Converter:
    cast = CASTS[column_type]
    if pattern is None and not value_map:
        return cast

    cast_targets = {text: cast(target) for text, target in (value_map or {}).items()}
    empty_is_null = column_type != "str"
    group = 1 if pattern is not None and pattern.groups else 0

    def convert(value: Any) -> Any:
        if value is None or (empty_is_null and value == ""):
            return None
        text = value if type(value) is str else json_text(value)
        if pattern is not None:
            match = pattern.search(text)
            if match is None:
                raise ConversionFailure(f"does not match regex {short_repr(pattern.pattern)}")
            text = match.group(group)
            if text is None:
                return None
            value = text
        mapped = cast_targets.get(text, _MISSING)
        if mapped is not _MISSING:
            return mapped
        return cast(value)

    return convert


class _OptionError(ValueError):
    """A problem with one part of a column's options; ``option`` extends the entry path."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


def _normalise_value_map_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        raise ValueError(
            f"key {short_repr(key)} was read by YAML as a boolean; quote it ('true', 'yes', 'on', ...) "
            "to say which string it matches"
        )
    if isinstance(key, int | float):
        return json_text(key)
    raise ValueError(f"key {short_repr(key)} is not a string; quote it")


class _Model(BaseModel):
    """A model that pickles without its cached properties (converters are closures, which pickle
    cannot carry): they are built again on first use. The line worker gets its mapping so."""

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        fields = type(self).model_fields
        state["__dict__"] = {name: value for name, value in state["__dict__"].items() if name in fields}
        return state


class ColumnMapping(_Model):
    """One column: its name, the ``user_properties`` key it reads and how the value is converted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str = ""
    type: ColumnType = "str"
    regex: str | None = None
    value_map: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _source_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("source") is None and "name" in data:
            return {**data, "source": data["name"]}
        return data

    @field_validator("name")
    @classmethod
    def _name_is_plain_identifier(cls, name: str) -> str:
        if _SQL_IDENTIFIER.fullmatch(name) is None:
            raise ValueError(
                f"column name {short_repr(name)} is not a plain lower-case SQL identifier "
                "(a-z, 0-9 and _, not starting with a digit, at most 63 characters)"
            )
        if name in SYSTEM_COLUMNS:
            raise ValueError(
                f"column name {short_repr(name)} is reserved for a system column ({', '.join(sorted(SYSTEM_COLUMNS))})"
            )
        return name

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, source: str) -> str:
        if not source:
            raise ValueError("source key must not be empty")
        return source

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, regex: str | None) -> str | None:
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as error:
                raise ValueError(f"regex {short_repr(regex)} does not compile: {error}") from None
        return regex

    @field_validator("value_map", mode="before")
    @classmethod
    def _value_map_keys_are_strings(cls, value_map: Any) -> Any:
        if isinstance(value_map, dict):
            return {_normalise_value_map_key(key): target for key, target in value_map.items()}
        return value_map

    @model_validator(mode="after")
    def _value_map_targets_fit_the_type(self) -> Self:
        cast = CASTS[self.type]
        for key, target in (self.value_map or {}).items():
            try:
                cast(target)
            except ConversionFailure as failure:
                raise _OptionError(
                    f"value_map[{short_repr(key)}]",
                    f"target {short_repr(target)} cannot become {self.type}: {failure.reason}",
                ) from None
        return self

    @cached_property
    def converter(self) -> Converter:
        """The conversion as a plain function, built once, for loops that call it many times; it
        remembers its results for strings in :attr:`remembered`."""
        pattern = re.compile(self.regex) if self.regex is not None else None
        return build_converter(self.type, pattern, self.value_map, self.remembered)

    @cached_property
    def remembered(self) -> dict[str, Any]:
        """What :attr:`converter` made of the strings it saw: a hot loop looks here before calling it."""
        return {}


class ColumnRoute(NamedTuple):
    """Where a mapped source key's value goes.

    ``slot`` indexes the permanent columns followed by the changeable ones, so that
    one flat list holds a record's values while its keys are routed.
    """

    slot: int
    column: ColumnMapping
    convert: Converter
    remembered: dict[str, Any]
    """``convert``'s results for strings (:func:`remembering_strings`)."""


class FieldMappings(_Model):
    """The validated mapping file: identity key, ignored keys and the two column lists."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    identity_key: str
    ignore: frozenset[str] = frozenset()
    permanent: tuple[ColumnMapping, ...] = ()
    changeable: tuple[ColumnMapping, ...] = ()

    @model_validator(mode="after")
    def _check_keys_and_names(self) -> Self:
        if not self.identity_key:
            raise ValueError("identity.ehr_id: must name a user_properties key")
        if self.identity_key in self.ignore:
            raise ValueError(f"ignore: {short_repr(self.identity_key)} is the identity key")

        column_entries: dict[str, str] = {}
        source_entries: dict[str, str] = {self.identity_key: "identity.ehr_id"}
        source_entries.update(dict.fromkeys(self.ignore, "ignore"))
        for section, column in self.sections():
            entry = f"{section}.{column.name}"
            if column.name in column_entries:
                raise ValueError(
                    f"{entry}: column {short_repr(column.name)} is also defined as {column_entries[column.name]}"
                )
            column_entries[column.name] = entry
            if column.source in source_entries:
                used_by = source_entries[column.source]
                raise ValueError(
                    f"{entry}.source: key {short_repr(column.source)} is already used by {used_by}"
                )
            source_entries[column.source] = entry
        return self

    def sections(self) -> list[tuple[str, ColumnMapping]]:
        """All columns in slot order, each with its section name."""
        return [("permanent", column) for column in self.permanent] + [
            ("changeable", column) for column in self.changeable
        ]

    @cached_property
    def known_keys(self) -> frozenset[str]:
        """Every key a record may carry: the identity key, the ignored keys and the column sources."""
        return frozenset({self.identity_key, *self.ignore, *self.routes})

    @cached_property
    def routes(self) -> dict[str, ColumnRoute]:
        """Source key → route; the identity and ignored keys are not in it. Do not mutate.

        A cached property rather than a private attribute: it is read once per record,
        and pydantic's private-attribute lookup costs about as much as converting a value.
        """
        return {
            column.source: ColumnRoute(slot, column, column.converter, column.remembered)
            for slot, (_, column) in enumerate(self.sections())
        }


class MappingFileError(ValueError):
    """The mapping file is unusable; the message names the file and the offending entry."""


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys instead of keeping the last one silently.

    Without it, a column written twice in one section would quietly lose its first
    definition.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {short_repr(key)}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_field_mappings(path: str | os.PathLike[str]) -> FieldMappings:
    """Read and validate a mapping file.

    A missing or unreadable file raises the usual ``OSError``; anything wrong with its
    content raises :class:`MappingFileError`.
    """
    with open(path, "rb") as stream:
        return parse_mapping_text(stream.read(), os.fspath(path))


def parse_mapping_text(content: bytes, source_name: str = "field_mappings.yaml") -> FieldMappings:
    """Validate the bytes of a mapping file (see :func:`load_field_mappings`)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MappingFileError(f"{source_name}: not UTF-8 text (byte {error.start})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.YAMLError as error:
        raise MappingFileError(f"{source_name}: not valid YAML: {shorten(str(error))}") from None
    return parse_field_mappings(data, source_name)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return short_repr(value)


def _error_message(error: ErrorDetails) -> str:
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return error["msg"]


def parse_field_mappings(data: Any, source_name: str = "field_mappings.yaml") -> FieldMappings:
    """Validate already-parsed YAML data (see :func:`load_field_mappings`)."""

    def error_at(entry: str, message: str) -> MappingFileError:
        return MappingFileError(f"{source_name}: {shorten(entry, 120)}: {shorten(message)}")

    if data is None:
        raise error_at("top level", "the file is empty")
    if not isinstance(data, dict):
        raise error_at(
            "top level", f"expected a mapping of sections ({', '.join(SECTIONS)}), got {_describe(data)}"
        )
    for section in data:
        if section not in SECTIONS:
            raise error_at(str(section), f"unknown section (expected {', '.join(SECTIONS)})")

    identity_key = _parse_identity(data.get("identity"), error_at)
    ignore = _parse_ignore(data.get("ignore"), error_at)
    permanent = _parse_section("permanent", data.get("permanent"), error_at)
    changeable = _parse_section("changeable", data.get("changeable"), error_at)
    try:
        return FieldMappings(
            identity_key=identity_key,
            ignore=frozenset(ignore),
            permanent=permanent,
            changeable=changeable,
        )
    except ValidationError as error:
        raise MappingFileError(f"{source_name}: {_error_message(error.errors()[0])}") from None


_ErrorAt = Callable[[str, str], MappingFileError]


def _parse_identity(identity: Any, error_at: _ErrorAt) -> str:
    if identity is None:
        raise error_at("identity.ehr_id", "missing: name the user_properties key holding the EHR id")
    if not isinstance(identity, dict):
        raise error_at("identity", f"expected a mapping like {{ehr_id: ehr_id}}, got {_describe(identity)}")
    for option in identity:
        if option != "ehr_id":
            raise error_at(f"identity.{option}", "unknown option (expected ehr_id)")
    key = identity.get("ehr_id")
    if key is None:
        raise error_at("identity.ehr_id", "missing: name the user_properties key holding the EHR id")
    if not isinstance(key, str) or not key:
        raise error_at("identity.ehr_id", f"expected a user_properties key, got {short_repr(key)}")
    return key


def _parse_ignore(ignore: Any, error_at: _ErrorAt) -> list[str]:
    if ignore is None:
        return []
    if not isinstance(ignore, list):
        raise error_at("ignore", f"expected a list of user_properties keys, got {_describe(ignore)}")
    seen: set[str] = set()
    for index, key in enumerate(ignore):
        if not isinstance(key, str) or not key:
            raise error_at(f"ignore[{index}]", f"expected a user_properties key, got {_describe(key)}")
        if key in seen:
            raise error_at(f"ignore[{index}]", f"key {short_repr(key)} is listed twice")
        seen.add(key)
    return ignore


def _parse_section(section: str, columns: Any, error_at: _ErrorAt) -> tuple[ColumnMapping, ...]:
    if columns is None:
        return ()
    if not isinstance(columns, dict):
        raise error_at(section, f"expected a mapping of column name to options, got {_describe(columns)}")
    parsed = []
    for name, options in columns.items():
        if not isinstance(name, str):
            raise error_at(
                f"{section}.{short_repr(name)}",
                "column name must be a plain lower-case SQL identifier (a string)",
            )
        entry = f"{section}.{name}"
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise error_at(
                entry,
                f"expected a mapping of options ({', '.join(COLUMN_OPTIONS)}) or nothing, "
                f"got {_describe(options)}",
            )
        for option in options:
            if option not in COLUMN_OPTIONS:
                raise error_at(
                    f"{entry}.{option}", f"unknown option (expected one of {', '.join(COLUMN_OPTIONS)})"
                )
        column_type = options.get("type", "str")
        if column_type not in COLUMN_TYPES:
            raise error_at(
                f"{entry}.type",
                f"unknown type {short_repr(column_type)} (expected one of {', '.join(COLUMN_TYPES)})",
            )
        try:
            parsed.append(ColumnMapping(name=name, **options))
        except ValidationError as error:
            first = error.errors()[0]
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, _OptionError):
                raise error_at(f"{entry}.{cause.option}", cause.message) from None
            field = str(first["loc"][0]) if first["loc"] else "name"
            location = entry if field == "name" else f"{entry}.{field}"
            raise error_at(location, _error_message(first)) from None
    return tuple(parsed)
