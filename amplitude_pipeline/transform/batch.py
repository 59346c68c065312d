"""Reducing a batch of transformed records to one candidate row per user (CONTRACT §6).

The reduction applies the tables' rules inside the batch, so that the set-based write of the
candidates gives the same rows as applying the records one by one:

- permanent: per ``ehr_id``, the earliest record (by ``event_time``, then line) sets the row's
  ``uuid``/``event_time``; every column takes the first non-NULL value, earliest record first.
- changeable: per user (``ehr_id``, else ``amplitude_id``), the latest record wins; a later
  record whose values equal the current candidate's keeps the candidate (the row records when
  its version was first seen). ``changed_in_batch`` tells the writer that the version was
  replaced inside the batch, so the row must follow even if the final values equal the
  stored ones (A → B → A is two replacements, not none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from amplitude_pipeline.transform.records import TransformedRecord


@dataclass(slots=True)
class PermanentCandidate:
    ehr_id: str
    uuid: str
    event_time: datetime
    line: int
    values: list[Any]
    # The values tuple merged last: a user's repeated snapshot is the very same tuple
    # (UserPropertiesMemo), and merging it again would change nothing.
    merged: tuple[Any, ...] = ()

    def as_row(self) -> tuple[Any, ...]:
        return (self.ehr_id, *self.values, self.uuid, self.event_time)


@dataclass(slots=True)
class ChangeableCandidate:
    ehr_id: str | None
    amplitude_id: int | None
    uuid: str
    event_time: datetime
    line: int
    values: tuple[Any, ...]
    changed_in_batch: bool = False

    def as_row(self) -> tuple[Any, ...]:
        return (
            self.ehr_id,
            self.amplitude_id,
            *self.values,
            self.uuid,
            self.event_time,
            self.changed_in_batch,
        )


UserKey = tuple[str, str | int]


@dataclass
class ReducedBatch:
    permanent: dict[str, PermanentCandidate] = field(default_factory=dict)
    changeable: dict[UserKey, ChangeableCandidate] = field(default_factory=dict)
    records: int = 0
    skipped_without_identity: int = 0

    def __len__(self) -> int:
        return self.records

    def add(self, record: TransformedRecord, line: int) -> None:
        self.records += 1
        if record.ehr_id is not None:
            self._add_permanent(record, line)
            user: UserKey = ("ehr_id", record.ehr_id)
        elif record.amplitude_id is not None:
            user = ("amplitude_id", record.amplitude_id)
        else:
            self.skipped_without_identity += 1
            return
        self._add_changeable(user, record, line)

    def _add_permanent(self, record: TransformedRecord, line: int) -> None:
        assert record.ehr_id is not None
        current = self.permanent.get(record.ehr_id)
        if current is None:
            self.permanent[record.ehr_id] = PermanentCandidate(
                record.ehr_id, record.uuid, record.event_time, line, list(record.permanent), record.permanent
            )
            return
        if record.event_time < current.event_time:
            current.values = _first_non_null(record.permanent, current.values)
            current.uuid, current.event_time, current.line = record.uuid, record.event_time, line
        elif record.permanent is not current.merged and None in current.values:
            current.values = _first_non_null(current.values, record.permanent)
        current.merged = record.permanent

    def _add_changeable(self, user: UserKey, record: TransformedRecord, line: int) -> None:
        current = self.changeable.get(user)
        if current is None:
            self.changeable[user] = ChangeableCandidate(
                record.ehr_id, record.amplitude_id, record.uuid, record.event_time, line, record.changeable
            )
            return
        if record.event_time < current.event_time or record.changeable == current.values:
            return
        self.changeable[user] = ChangeableCandidate(
            record.ehr_id,
            record.amplitude_id,
            record.uuid,
            record.event_time,
            line,
            record.changeable,
            changed_in_batch=True,
        )


def _first_non_null(preferred: Any, fallback: Any) -> list[Any]:
    return [value if value is not None else other for value, other in zip(preferred, fallback, strict=True)]
