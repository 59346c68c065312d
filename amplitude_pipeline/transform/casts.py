"""Conversions of single JSON values into column values (CONTRACT §5).

Every cast takes one value as it comes out of a JSON parser (``None``, ``bool``,
``int``, ``float``, ``str``, ``list``, ``dict``) and returns the Python value the
column stores, or raises :class:`ConversionFailure`. ``None`` always becomes
``None`` and, for every type but ``str``, so does the empty string.

The casts run once per value of every record, so they branch on ``type(value) is``
(cheaper than ``isinstance`` and, for JSON values, exact) and test the most common
input type first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Final, Literal, get_args

ColumnType = Literal["str", "int", "float", "bool", "date", "datetime"]
COLUMN_TYPES: Final[tuple[str, ...]] = get_args(ColumnType)

Cast = Callable[[Any], Any]

BIGINT_MIN: Final = -(2**63)
BIGINT_MAX: Final = 2**63 - 1
# orjson reads integer literals from -2**63 to 2**64 - 1 exactly and turns the others into floats,
# which round to at most -2**63 or at least 2**64.
_ORJSON_INT_FLOOR: Final = -(2.0**63)
_ORJSON_INT_CEILING: Final = 2.0**64
_OUT_OF_RANGE: Final = "out of the supported range (years 1 to 9999, in UTC)"
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)
_UTC_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_INT_TEXT: Final = re.compile(r"\s*[+-]?[0-9]+\s*")
_FLOAT_TEXT: Final = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_ISO_DATE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DOTTED_DATE: Final = re.compile(r"([0-9]{2})\.([0-9]{2})\.([0-9]{4})")
_BOOL_TEXT: Final[dict[str, bool]] = {
    "true": True,
    "1": True,
    "yes": True,
    "false": False,
    "0": False,
    "no": False,
}


def may_have_lost_digits(value: float) -> bool:
    """Whether orjson can have made ``value`` of an integer literal, whose digits are then gone.

    A line with such a float is read again exactly (:mod:`amplitude_pipeline.transform.json_line`);
    a float that is still one afterwards was written with a fraction, and a float it stays.
    """
    return value <= _ORJSON_INT_FLOOR or value >= _ORJSON_INT_CEILING


class ConversionFailure(ValueError):
    """A value that its column's rules cannot turn into a column value.

    ``reason`` says why in a few words; the caller adds which key and value it was.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_json_kind(value: Any) -> str:
    """Name a value's JSON kind for error messages ("a JSON array", "a boolean", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return f"a {type(value).__name__}"


def json_text(value: Any) -> str:
    """The string form used by ``regex`` and ``value_map``: the value as JSON would write it.

    Strings are themselves; booleans are ``true``/``false``; numbers are their JSON
    literal (for floats, Python's shortest round-trip repr, e.g. ``1.5``, ``1e+16``).
    Arrays and objects have no string form, and neither has a float that may be an integer
    whose digits orjson dropped (:func:`may_have_lost_digits`): the loaders read such a line
    again exactly, and a float left after that was written with a fraction.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        if not math.isfinite(value):
            raise ConversionFailure(f"{value!r} is not a finite number")
        if may_have_lost_digits(value):
            raise ConversionFailure(
                "a number beyond 64 bits with a fraction: a float keeps only its first 17 digits, "
                "so its text is lost; send it as a string"
            )
        return repr(value)
    raise ConversionFailure(f"expected a string, number or boolean, got {describe_json_kind(value)}")


def cast_str(value: Any) -> str | None:
    """Strings as they are; numbers and booleans as their JSON text."""
    if type(value) is str:
        if "\x00" in value:
            raise ConversionFailure("contains a NUL character, which PostgreSQL text cannot store")
        return value
    if value is None:
        return None
    if type(value) in (bool, int, float):
        return json_text(value)
    raise ConversionFailure(f"expected a string, number or boolean, got {describe_json_kind(value)}")


def _checked_bigint(number: int) -> int:
    if BIGINT_MIN <= number <= BIGINT_MAX:
        return number
    raise ConversionFailure("integer out of the 64-bit range")


def cast_int(value: Any) -> int | None:
    """Integers, integral floats (``3.0``) and strings of ASCII digits with an optional sign."""
    kind = type(value)
    if kind is int:
        return _checked_bigint(value)
    if value is None:
        return None
    if kind is str:
        if not value:
            return None
        if _INT_TEXT.fullmatch(value) is None:
            raise ConversionFailure("not an integer")
        try:
            number = int(value)
        except ValueError:
            raise ConversionFailure("integer out of the 64-bit range") from None
        return _checked_bigint(number)
    if kind is float:
        if may_have_lost_digits(value):
            raise ConversionFailure("integer out of the 64-bit range")
        if value.is_integer():
            return _checked_bigint(int(value))
        raise ConversionFailure("not an integral number")
    raise ConversionFailure(f"expected an integer, got {describe_json_kind(value)}")


def cast_float(value: Any) -> float | None:
    """Finite numbers and decimal number strings (``"1.5"``, ``"-2e3"``); never nan or infinity."""
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        raise ConversionFailure("not a finite number")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise ConversionFailure("number too large for a float") from None
    if value is None:
        return None
    if kind is str:
        if not value:
            return None
        if _FLOAT_TEXT.fullmatch(value) is None:
            raise ConversionFailure("not a number")
        number = float(value)
        if math.isfinite(number):
            return number
        raise ConversionFailure("number too large for a float")
    raise ConversionFailure(f"expected a number, got {describe_json_kind(value)}")


def cast_bool(value: Any) -> bool | None:
    """JSON booleans, the numbers 0 and 1, and true/false/1/0/yes/no in any case."""
    kind = type(value)
    if kind is bool:
        return value
    if value is None:
        return None
    if kind is str:
        if not value:
            return None
        flag = _BOOL_TEXT.get(value.strip().lower())
        if flag is None:
            raise ConversionFailure("not a boolean (expected true/false, 1/0 or yes/no)")
        return flag
    if kind is int:
        if value == 1:
            return True
        if value == 0:
            return False
        raise ConversionFailure("only the numbers 0 and 1 are booleans")
    raise ConversionFailure(f"expected a boolean, got {describe_json_kind(value)}")


def _build_date(year: str, month: str, day: str) -> date:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ConversionFailure("no such calendar date") from None


def cast_date(value: Any) -> date | None:
    """``YYYY-MM-DD`` or ``DD.MM.YYYY`` strings (surrounding blanks allowed)."""
    if type(value) is str:
        if not value:
            return None
        text = value.strip()
        match = _ISO_DATE.fullmatch(text)
        if match is not None:
            return _build_date(*match.groups())
        match = _DOTTED_DATE.fullmatch(text)
        if match is not None:
            day, month, year = match.groups()
            return _build_date(year, month, day)
        raise ConversionFailure("not a date (expected YYYY-MM-DD or DD.MM.YYYY)")
    if value is None:
        return None
    if type(value) is date:
        return value
    raise ConversionFailure(f"expected a date string, got {describe_json_kind(value)}")


def as_utc(moment: datetime) -> datetime:
    """The same instant with tzinfo UTC; a naive datetime is taken to be UTC already.

    Raises :class:`ConversionFailure` for an instant that UTC puts outside years 1–9999
    (``0001-01-01T00:00:00+01:00``).
    """
    if moment.tzinfo is None:
        # ``moment.replace(tzinfo=UTC)``, at a fifth of its cost (every event's time comes here).
        return _UTC_EPOCH + (moment - _NAIVE_EPOCH)
    if moment.tzinfo is UTC:
        return moment
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ConversionFailure(_OUT_OF_RANGE) from None


def parse_datetime_utc(text: str) -> datetime:
    """Parse ISO 8601 or Amplitude's ``YYYY-MM-DD HH:MM:SS[.ffffff]`` into an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ConversionFailure(
            "not a datetime (expected ISO 8601 or YYYY-MM-DD HH:MM:SS[.ffffff])"
        ) from None
    return as_utc(parsed)


def cast_datetime(value: Any) -> datetime | None:
    """ISO 8601 strings (Amplitude's space-separated form included) as aware UTC datetimes."""
    if type(value) is str:
        if not value:
            return None
        return parse_datetime_utc(value.strip())
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    raise ConversionFailure(f"expected a datetime string, got {describe_json_kind(value)}")


CASTS: Final[dict[str, Cast]] = {
    "str": cast_str,
    "int": cast_int,
    "float": cast_float,
    "bool": cast_bool,
    "date": cast_date,
    "datetime": cast_datetime,
}
