"""Reading one JSON line: fast with orjson, and exactly where orjson loses a number's digits.

orjson reads integer literals from -2**63 to 2**64 - 1 exactly; any other becomes a float (its
digits beyond the 17th gone) or, beyond a double, refuses the line ("number is infinity when
parsed as double"). PostgreSQL's ``jsonb`` keeps every digit, and so does Python's ``json``,
which reads a ``tmp_user_properties`` row through psycopg. Reading every line with Python's
``json`` would cost about six times orjson's time (21 µs against 3.6 µs for a 1.8 KB event), so
a line is read again with it only when the outcome can depend on it: when orjson refused the
line for a number's size, or when the line failed to convert and orjson's reading of it holds a
float that may be an integer whose digits are gone
(:func:`~amplitude_pipeline.transform.casts.may_have_lost_digits`; the casts refuse such a float
wherever its digits matter, so a line that converts never needs the second reading).

The second reading gives what orjson gives except that integers keep their digits, and a number
beyond 64 bits written with an exponent but no fraction (``1e30``) is the integer it names, as
``jsonb`` holds it (1000000000000000000000000000000: numeric keeps no exponent), so that both
sources agree. Where Python's ``json`` reads what orjson refuses (``NaN``, a lone surrogate, an
infinite float) or cannot read the line (more than 4,300 digits, deep nesting), orjson's
outcome stands.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Final

import orjson

from amplitude_pipeline.transform.casts import may_have_lost_digits
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import (
    RecordError,
    TransformedRecord,
    UserPropertiesMemo,
    transform_single_record,
)

__all__ = [
    "NotReadableExactlyError",
    "holds_lost_digits",
    "read_exactly",
    "read_line",
    "refused_for_size",
    "reread_lost_digits",
    "transform_line",
]

_TOO_LARGE: Final = "number is infinity when parsed as double"


class NotReadableExactlyError(ValueError):
    """Python's ``json`` would read the line differently from orjson, or not at all."""


def _refuse_constant(name: str) -> Any:
    raise NotReadableExactlyError(f"{name} is not JSON")


def _exact_float(text: str) -> float | int:
    value = float(text)
    if not math.isfinite(value):
        raise NotReadableExactlyError(f"{text[:40]} is beyond a double")
    if may_have_lost_digits(value):
        number = Decimal(text)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0:  # no digit after the point, as jsonb counts
            return int(number)
    return value


_EXACT_DECODER: Final = json.JSONDecoder(parse_float=_exact_float, parse_constant=_refuse_constant)


def read_exactly(line: bytes) -> Any:
    """``line`` read as orjson reads it, but with every integer exact (see the module's docstring).

    Raises :class:`NotReadableExactlyError` where that reading would differ from orjson's in
    anything but numbers, or cannot be made.
    """
    try:
        value = _EXACT_DECODER.decode(line.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise NotReadableExactlyError(str(error)) from None
    if _holds_a_surrogate(value):
        raise NotReadableExactlyError("a lone surrogate, which orjson refuses")
    return value


def _holds_a_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is str:
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif type(item) is dict:
            pending.extend(item)
            pending.extend(item.values())
        elif type(item) is list:
            pending.extend(item)
    return False


def holds_lost_digits(value: Any) -> bool:
    """Whether orjson's reading ``value`` holds a float that may be an integer whose digits are gone."""
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is float:
            if may_have_lost_digits(item):
                return True
        elif type(item) is dict:
            pending.extend(item.values())
        elif type(item) is list:
            pending.extend(item)
    return False


def refused_for_size(error: orjson.JSONDecodeError) -> bool:
    """Whether orjson refused a line for a number beyond a double (an integer may be behind it)."""
    return _TOO_LARGE in error.msg


def read_line(line: bytes) -> Any:
    """orjson's reading of ``line``; the exact one when orjson refuses it for a number's size.

    Raises ``orjson.JSONDecodeError`` (orjson's) when neither reads it.
    """
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        if refused_for_size(error):
            try:
                return read_exactly(line)
            except NotReadableExactlyError:
                pass
        raise


def reread_lost_digits(line: bytes, value: Any) -> Any:
    """The exact reading of ``line`` when its reading ``value`` holds a float that may be an integer
    whose digits are gone and the line reads exactly; otherwise ``value`` itself."""
    if not holds_lost_digits(value):
        return value
    try:
        return read_exactly(line)
    except NotReadableExactlyError:
        return value


def transform_line(
    line: bytes, mappings: FieldMappings, memo: UserPropertiesMemo | None = None
) -> TransformedRecord:
    """The record of one JSON line, as the S3 loader takes it: read by orjson, and read again exactly
    where that can change the outcome.

    Raises ``orjson.JSONDecodeError`` or :class:`RecordError` as the exact reading (or, where
    there is none, orjson's) finds them, with the same messages.
    """
    record = read_line(line)
    try:
        return transform_single_record(record, mappings, memo)
    except RecordError:
        exact = reread_lost_digits(line, record)
        if exact is record:
            raise
    return transform_single_record(exact, mappings, memo)
