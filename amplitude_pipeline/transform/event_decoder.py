"""The loader's reading of an event line: the four fields it loads, the rest checked but not built.

orjson builds every one of an event's ~45 fields (1.8 KB: ~4 µs), though a load reads only
``uuid``, ``event_time``, ``amplitude_id`` and ``user_properties``. Here simdjson checks the
whole line (~1 µs: JSON grammar, UTF-8, numbers a double can hold, nesting), msgspec picks the
four fields out of it without building the others (~1.4 µs; of duplicate keys the last wins, as
with orjson), and ``user_properties`` stays JSON text until it must be converted: a user's events
mostly repeat their snapshot byte for byte, and comparing the text with the one converted before
costs less than reading it (:meth:`~amplitude_pipeline.transform.records.UserPropertiesMemo.transform_text`).

The outcome is always :func:`~amplitude_pipeline.transform.json_line.transform_line`'s. A line
this reading does not take as it is goes to ``transform_line``, which decides (its record, or its
error with its message): a line simdjson refuses (malformed; an integer beyond 64 bits, which
orjson reads as a float and ``transform_line`` again exactly; nesting past 1,023 levels), a line
msgspec refuses (one that starts with a UTF-8 byte order mark, which simdjson skips and orjson
refuses), and a line whose record does not transform. Whatever else the two accept, orjson
accepts too, and reads the four fields to the same values
(``amplitude_pipeline_tests/transform/test_event_decoder.py``), so a line taken here is the
record ``transform_line`` gives.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import simdjson
from msgspec.structs import astuple

from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import (
    MISSING,
    TransformedRecord,
    UserPropertiesMemo,
    convert_identity,
    read_amplitude_id,
    read_event_time,
    read_uuid,
)

__all__ = ["EventLineDecoder"]


class _Envelope(msgspec.Struct):
    """The four fields of an event: an absent one is :data:`MISSING`, an absent ``user_properties``
    empty text."""

    uuid: Any = MISSING
    event_time: Any = MISSING
    amplitude_id: Any = MISSING
    user_properties: msgspec.Raw = msgspec.Raw()


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_NOT_REMEMBERED: Final = object()


class _SnapshotReader:
    """``user_properties`` text into its column values, without making a dict of it: msgspec reads
    the object into a struct with one field per key the mapping knows (the identity, the columns'
    sources, the ignored keys, which are not even built), and refuses one with any other key.

    For a text it reads, the values are :func:`transform_user_properties`'s of the object (a
    missing key and ``null`` are both NULL, every converter makes NULL of ``null``, and each
    column has its converter, with what it remembers of strings); for any other text, or a value
    that does not convert, it raises, and the line is read again by ``transform_line``.
    """

    __slots__ = ("_columns", "_decoder", "_split")

    def __init__(self, mappings: FieldMappings) -> None:
        routes = list(mappings.routes.items())  # in slot order
        read = [mappings.identity_key, *(source for source, _ in routes)]
        skipped = sorted(mappings.ignore)
        names = [f"k{index}" for index in range(len(read) + len(skipped))]
        struct = msgspec.defstruct(
            "UserProperties",
            [(name, Any, None) for name in names[: len(read)]]
            + [(name, msgspec.Raw, msgspec.Raw()) for name in names[len(read) :]],
            rename=dict(zip(names, [*read, *skipped], strict=True)),
            forbid_unknown_fields=True,
            gc=False,
        )
        self._decoder = msgspec.json.Decoder(struct)
        self._columns = [(route.convert, route.remembered) for _, route in routes]
        self._split = len(mappings.permanent)

    def __call__(self, text: bytes) -> tuple[str | None, tuple[Any, ...], tuple[Any, ...]]:
        found = astuple(self._decoder.decode(text))
        values: list[Any] = []
        append, not_remembered = values.append, _NOT_REMEMBERED
        # The ignored keys, after the columns, are left out.
        for value, (convert, remembered) in zip(found[1:], self._columns, strict=False):
            if value is None:
                append(None)
            elif (
                type(value) is str
                and (converted := remembered.get(value, not_remembered)) is not not_remembered
            ):
                append(converted)
            else:
                append(convert(value))
        split = self._split
        return convert_identity(found[0]), tuple(values[:split]), tuple(values[split:])


class EventLineDecoder:
    """Event lines into records, for one load at a time (it keeps its memo and its parser)."""

    __slots__ = ("_mappings", "_memo", "_read_snapshot", "_validator")

    def __init__(self, mappings: FieldMappings, memo: UserPropertiesMemo) -> None:
        self._mappings = mappings
        self._memo = memo
        self._validator = simdjson.Parser()
        self._read_snapshot = _SnapshotReader(mappings)

    def record(self, line: bytes) -> TransformedRecord:
        """The record of ``line``; raises what :func:`transform_line` raises for it."""
        record = self._four_fields(line)
        if record is None:
            return transform_line(line, self._mappings)
        return record

    def _four_fields(self, line: bytes) -> TransformedRecord | None:
        """The record read from the four fields alone, or ``None`` where ``transform_line`` must decide."""
        try:
            self._validator.parse(line)
            envelope = _ENVELOPE.decode(line)
            text = envelope.user_properties
            if not text:
                return None
            amplitude_id = read_amplitude_id(envelope.amplitude_id)
            ehr_id, permanent, changeable = self._memo.transform_text(
                bytes(text), amplitude_id, self._read_snapshot
            )
            return TransformedRecord(
                read_uuid(envelope.uuid),
                read_event_time(envelope.event_time),
                amplitude_id,
                ehr_id,
                permanent,
                changeable,
            )
        except Exception:  # whatever it is, transform_line reads the line again and decides
            return None
