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

from amplitude_pipeline.transform.json_line import transform_line
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import (
    MISSING,
    TransformedRecord,
    UserPropertiesMemo,
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
_JSON: Final = msgspec.json.Decoder()


class EventLineDecoder:
    """Event lines into records, for one load at a time (it keeps its memo and its parser)."""

    __slots__ = ("_mappings", "_memo", "_validator")

    def __init__(self, mappings: FieldMappings, memo: UserPropertiesMemo) -> None:
        self._mappings = mappings
        self._memo = memo
        self._validator = simdjson.Parser()

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
                bytes(text), amplitude_id, _JSON.decode, self._mappings
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
