"""Turn one record (an Amplitude event or a ``tmp_user_properties`` row) into column values.

Both sources share one rule set (CONTRACT §5, §6): every ``user_properties`` key must
be known to the mapping file and every value must convert, otherwise the record is
an error. :func:`transform_single_record` stops at the first problem, which is what a
load needs; :func:`collect_record_errors` runs the same code but keeps going, which is
what an audit needs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final, NamedTuple

from amplitude_pipeline.text import short_repr, shorten
from amplitude_pipeline.transform.casts import (
    BIGINT_MAX,
    BIGINT_MIN,
    ColumnType,
    ConversionFailure,
    as_utc,
    describe_json_kind,
    parse_datetime_utc,
)
from amplitude_pipeline.transform.mapping import FieldMappings

__all__ = [
    "MISSING",
    "MalformedRecordError",
    "RecordError",
    "TransformedRecord",
    "UnknownKeyError",
    "UserPropertiesMemo",
    "ValueConversionError",
    "collect_envelope_errors",
    "collect_record_errors",
    "convert_identity",
    "transform_single_record",
    "transform_user_properties",
]

IDENTITY_MAX_BYTES: Final = 1000
_LONGEST_DATE: Final = len("YYYY-MM-DD")
REASON_LIMIT: Final = 300
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Missing:
    """The value of a field or key that is absent (as opposed to present and null)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class RecordError(Exception):
    """A record that cannot be loaded.

    ``key`` is the offending ``user_properties`` key (or record field for
    :class:`MalformedRecordError`; ``None`` when the record as a whole is wrong),
    ``value`` the offending value (:data:`MISSING` when absent) and ``reason`` why.
    """

    container = "user_properties"

    def __init__(self, key: str | None, value: Any, reason: str) -> None:
        super().__init__(key, value, reason)
        self.key = key
        self.value = value
        self.reason = reason

    def __str__(self) -> str:
        """One readable line: key and value are cut to a few dozen characters, however large."""
        where = self.container if self.key is None else f"{self.container}[{short_repr(self.key)}]"
        reason = shorten(self.reason, REASON_LIMIT)
        if self.value is MISSING:
            return f"{where}: {reason}"
        return f"{where} = {short_repr(self.value)}: {reason}"


class UnknownKeyError(RecordError):
    """A ``user_properties`` key that is neither the identity key, ignored, nor a column source."""

    def __init__(self, key: str, value: Any, reason: str | None = None) -> None:
        super().__init__(
            key,
            value,
            reason or "unknown key: add it to field_mappings.yaml (ignore, or the source of a column)",
        )


class ValueConversionError(RecordError):
    """A value that its column (or the identity rule) cannot convert.

    ``column`` is ``"permanent.<name>"``/``"changeable.<name>"``, or ``"identity"``
    for the identity key; ``column_type`` is the type it was converted to.
    """

    def __init__(self, key: str, value: Any, reason: str, column: str, column_type: ColumnType) -> None:
        RecordError.__init__(self, key, value, reason)
        self.args = (key, value, reason, column, column_type)
        self.column = column
        self.column_type = column_type

    def __str__(self) -> str:
        return f"{super().__str__()} (column {self.column}, type {self.column_type})"


class MalformedRecordError(RecordError):
    """The record itself is unusable: not an object, or a bad ``uuid``/``event_time``/
    ``amplitude_id``/``user_properties`` field."""

    container = "record"


class TransformedRecord(NamedTuple):
    """A record's column values; ``permanent``/``changeable`` align with the mapping's columns.

    A named tuple rather than a frozen dataclass: one is built per event, and a frozen
    dataclass's ``__init__`` costs several times more on this hot path.
    """

    uuid: str
    event_time: datetime
    amplitude_id: int | None
    ehr_id: str | None
    permanent: tuple[Any, ...]
    changeable: tuple[Any, ...]


def convert_identity(value: Any) -> str | None:
    """The EHR id as text: strings stripped (blank → ``None``), integers as digits.

    An id is a key of both tables' unique indexes, whose entries PostgreSQL limits to about
    2,700 bytes: longer ids are refused here, at their line, rather than failing a whole batch.
    """
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise ConversionFailure("contains a NUL character, which PostgreSQL text cannot store")
        ehr_id = value.strip()
        if len(ehr_id) * 4 > IDENTITY_MAX_BYTES and len(ehr_id.encode()) > IDENTITY_MAX_BYTES:
            raise ConversionFailure(f"longer than {IDENTITY_MAX_BYTES:,} bytes, too long for an EHR id")
        return ehr_id or None
    if kind is int:
        return str(value)
    if value is None:
        return None
    raise ConversionFailure(f"an EHR id must be a string or an integer, got {describe_json_kind(value)}")


_ErrorSink = Callable[[RecordError], None]
_NOT_REMEMBERED: Final = object()


def _raise(error: RecordError) -> None:
    raise error


def _route_user_properties(
    user_properties: Mapping[str, Any], mappings: FieldMappings, report: _ErrorSink
) -> tuple[str | None, list[Any]]:
    """Convert every key into its slot; hand each problem to ``report``, which may raise.

    The single implementation behind both the fail-fast and the collect-everything
    entry points.
    """
    routes, identity_key, ignore = mappings.routes, mappings.identity_key, mappings.ignore
    values: list[Any] = [None] * len(routes)
    ehr_id = None
    not_remembered = _NOT_REMEMBERED
    for key, value in user_properties.items():
        route = routes.get(key)
        if route is not None:
            slot, column, convert, remembered = route
            if type(value) is str:  # a string converted before costs a lookup, not a call
                converted = remembered.get(value, not_remembered)
                if converted is not not_remembered:
                    values[slot] = converted
                    continue
            try:
                values[slot] = convert(value)
            except ConversionFailure as failure:
                section = "permanent" if slot < len(mappings.permanent) else "changeable"
                report(
                    ValueConversionError(key, value, failure.reason, f"{section}.{column.name}", column.type)
                )
        elif key == identity_key:
            try:
                ehr_id = convert_identity(value)
            except ConversionFailure as failure:
                report(ValueConversionError(key, value, failure.reason, "identity", "str"))
        elif key not in ignore:
            report(UnknownKeyError(key, value))
    return ehr_id, values


_Converted = tuple[str | None, tuple[Any, ...], tuple[Any, ...]]


def transform_user_properties(user_properties: Mapping[str, Any], mappings: FieldMappings) -> _Converted:
    """Return ``(ehr_id, permanent values, changeable values)``; keys that are absent give ``None``.

    Raises :class:`UnknownKeyError` or :class:`ValueConversionError` for the first bad key.
    """
    ehr_id, values = _route_user_properties(user_properties, mappings, _raise)
    split = len(mappings.permanent)
    return ehr_id, tuple(values[:split]), tuple(values[split:])


def collect_record_errors(user_properties: Any, mappings: FieldMappings) -> list[RecordError]:
    """Every problem of one ``user_properties`` object, in key order (empty when it loads)."""
    if not isinstance(user_properties, Mapping):
        return [_user_properties_error(user_properties)]
    errors: list[RecordError] = []
    _route_user_properties(user_properties, mappings, errors.append)
    return errors


def _user_properties_error(value: Any) -> MalformedRecordError:
    if value is MISSING:
        return MalformedRecordError("user_properties", value, "missing")
    return MalformedRecordError(
        "user_properties", value, f"expected a JSON object, got {describe_json_kind(value)}"
    )


def read_uuid(value: Any) -> str:
    """A record's ``uuid`` field (:data:`MISSING` when absent) as canonical UUID text."""
    if type(value) is str:
        if _CANONICAL_UUID.fullmatch(value) is not None:
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise MalformedRecordError("uuid", value, "not a UUID") from None
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is MISSING:
        raise MalformedRecordError("uuid", value, "missing")
    raise MalformedRecordError("uuid", value, f"expected a UUID string, got {describe_json_kind(value)}")


def read_event_time(value: Any) -> datetime:
    """A record's ``event_time`` field (:data:`MISSING` when absent) as an aware UTC datetime."""
    if type(value) is str:
        if len(value) <= _LONGEST_DATE and _is_a_date(value):
            # A day is not a moment: read as midnight it would make the event the oldest of its
            # day, which decides which version of a user wins.
            raise MalformedRecordError("event_time", value, "a date without a time of day")
        try:
            return parse_datetime_utc(value)
        except ConversionFailure as failure:
            raise MalformedRecordError("event_time", value, failure.reason) from None
    if isinstance(value, datetime):
        try:
            return as_utc(value)
        except ConversionFailure as failure:
            raise MalformedRecordError("event_time", value, failure.reason) from None
    if value is MISSING:
        raise MalformedRecordError("event_time", value, "missing")
    raise MalformedRecordError(
        "event_time", value, f"expected a 'YYYY-MM-DD HH:MM:SS' string, got {describe_json_kind(value)}"
    )


def _is_a_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def read_amplitude_id(value: Any) -> int | None:
    """A record's ``amplitude_id`` field (null or absent: ``None``) as a bigint."""
    if value is None or value is MISSING:
        return None
    if type(value) is int:
        if BIGINT_MIN <= value <= BIGINT_MAX:
            return value
        raise MalformedRecordError("amplitude_id", value, "out of the 64-bit range of a bigint column")
    raise MalformedRecordError("amplitude_id", value, f"expected an integer, got {describe_json_kind(value)}")


def _record_uuid(record: Mapping[str, Any]) -> str:
    return read_uuid(record.get("uuid", MISSING))


def _record_event_time(record: Mapping[str, Any]) -> datetime:
    return read_event_time(record.get("event_time", MISSING))


def _record_amplitude_id(record: Mapping[str, Any]) -> int | None:
    return read_amplitude_id(record.get("amplitude_id"))


def _record_user_properties(record: Mapping[str, Any]) -> Mapping[str, Any]:
    return read_user_properties(record.get("user_properties", MISSING))


def read_user_properties(value: Any) -> Mapping[str, Any]:
    """A record's ``user_properties`` field (:data:`MISSING` when absent), which must be an object."""
    if type(value) is dict or isinstance(value, Mapping):  # the exact check first: ABCs are slow
        return value
    raise _user_properties_error(value)


def _require_mapping(record: Any) -> Mapping[str, Any]:
    if type(record) is dict or isinstance(record, Mapping):
        return record
    raise MalformedRecordError(None, record, f"expected a JSON object, got {describe_json_kind(record)}")


_ENVELOPE_FIELDS: Final = (_record_uuid, _record_event_time, _record_amplitude_id, _record_user_properties)


def collect_envelope_errors(record: Any) -> list[MalformedRecordError]:
    """Every problem of a record outside ``user_properties``'s content (empty when there is none)."""
    try:
        fields = _require_mapping(record)
    except MalformedRecordError as error:
        return [error]
    errors = []
    for read_field in _ENVELOPE_FIELDS:
        try:
            read_field(fields)
        except MalformedRecordError as error:
            errors.append(error)
    return errors


def transform_single_record(
    record: Mapping[str, Any], mappings: FieldMappings, memo: UserPropertiesMemo | None = None
) -> TransformedRecord:
    """Convert an Amplitude event or a ``tmp_user_properties`` row.

    Reads ``uuid`` (a string or ``uuid.UUID``), ``event_time`` (Amplitude's UTC text,
    or a datetime; naive means UTC), ``amplitude_id`` (integer or null/absent) and
    ``user_properties``; other fields are ignored. Raises a :class:`RecordError`
    subclass for the first problem found. With a ``memo``, a user's snapshot identical
    to the one converted just before is not converted again.
    """
    fields = _require_mapping(record)
    record_uuid = _record_uuid(fields)
    event_time = _record_event_time(fields)
    amplitude_id = _record_amplitude_id(fields)
    user_properties = _record_user_properties(fields)
    if memo is None:
        ehr_id, permanent, changeable = transform_user_properties(user_properties, mappings)
    else:
        ehr_id, permanent, changeable = memo.transform(user_properties, amplitude_id, mappings)
    return TransformedRecord(record_uuid, event_time, amplitude_id, ehr_id, permanent, changeable)


class UserPropertiesMemo:
    """Each user's last converted ``user_properties`` snapshot.

    Every event carries the user's whole snapshot, and a user has few versions of it, so when
    a user has many events most of them repeat the snapshot of the user's previous event.
    Comparing two snapshots is far cheaper than converting one. A snapshot is a dict
    (:meth:`transform`), where equality alone is not enough (``1 == 1.0 == True`` while their
    text forms differ), so the value types must match too; or the object's JSON text
    (:meth:`transform_text`), whose bytes decide, and which is not even read when they match.
    It holds at most ``max_users`` snapshots and starts afresh when full, so memory is bounded
    however many users a file has.

    Where users seldom repeat a snapshot (a week of many light users), remembering costs time
    and memory and saves nothing. The memo therefore counts its hits per ``window`` lookups:
    below ``MIN_HIT_SHARE`` of them, it forgets everything and rests for ``REST_WINDOWS``
    windows (converting every snapshot), then tries again. A window small next to
    ``max_users`` keeps a memo that is of no use from growing large; one as large as
    ``max_users`` gives users who come back after many others (a user with a few events a
    week) the time to come back. Results are the same either way.
    """

    __slots__ = ("_hits", "_last", "_lookups", "_max_users", "_resting", "_window")

    WINDOW = 10_000
    MIN_HIT_SHARE = 0.15
    REST_WINDOWS = 10

    def __init__(self, max_users: int = 50_000, window: int = WINDOW) -> None:
        self._last: dict[Any, tuple[Any, tuple[type, ...] | None, _Converted]] = {}
        self._max_users = max_users
        self._window = window
        self._lookups = 0
        self._hits = 0
        self._resting = 0

    def __len__(self) -> int:
        return len(self._last)

    @property
    def resting(self) -> bool:
        return self._resting > 0

    def transform(
        self, user_properties: Mapping[str, Any], amplitude_id: int | None, mappings: FieldMappings
    ) -> _Converted:
        """:func:`transform_user_properties` of a snapshot, the user's last one if it is the same."""
        if self._resting:
            self._resting -= 1
            return transform_user_properties(user_properties, mappings)
        user = user_properties.get(mappings.identity_key)
        if user is None:
            user = amplitude_id
        try:
            cached = self._last.get(user)
        except TypeError:  # an unhashable identity value: the conversion reports it
            return transform_user_properties(user_properties, mappings)
        # Types are compared only once the values are equal: a first sighting costs one lookup.
        if (
            cached is not None
            and cached[0] == user_properties
            and cached[1] == tuple(map(type, user_properties.values()))
        ):
            return self._hit(cached[2])
        converted = transform_user_properties(user_properties, mappings)
        self._remember(user, user_properties, tuple(map(type, user_properties.values())), converted)
        return converted

    def transform_text(
        self, text: bytes, user: int | None, convert: Callable[[bytes], _Converted]
    ) -> _Converted:
        """The conversion of the ``user_properties`` object written as ``text``: the user's last one
        when the text is the same bytes, else ``convert(text)``.

        ``user`` is the record's ``amplitude_id``: the identity inside the text is not known
        before it is read, and a user's events share their ``amplitude_id``.
        """
        if self._resting:
            self._resting -= 1
            return convert(text)
        cached = self._last.get(user)
        if cached is not None and cached[0] == text:
            return self._hit(cached[2])
        converted = convert(text)
        self._remember(user, text, None, converted)
        return converted

    def _hit(self, converted: _Converted) -> _Converted:
        self._hits += 1
        self._count_lookup()
        return converted

    def _remember(
        self, user: Any, snapshot: Any, types: tuple[type, ...] | None, converted: _Converted
    ) -> None:
        if user not in self._last and len(self._last) >= self._max_users:
            self._last.clear()
        self._last[user] = (snapshot, types, converted)
        self._count_lookup()

    def _count_lookup(self) -> None:
        self._lookups += 1
        if self._lookups == self._window:
            if self._hits < self._window * self.MIN_HIT_SHARE:
                self._last.clear()
                self._resting = self._window * self.REST_WINDOWS
            self._lookups = self._hits = 0
