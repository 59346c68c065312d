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


# An ehr_id (text) or, for anonymous records, an amplitude_id (integer): the types keep the
# two identities apart in one dict.
UserKey = str | int


@dataclass
class ReducedBatch:
    permanent: dict[str, PermanentCandidate] = field(default_factory=dict)
    changeable: dict[UserKey, ChangeableCandidate] = field(default_factory=dict)
    records: int = 0
    skipped_without_identity: int = 0

    def add(self, record: TransformedRecord, line: int) -> None:
        """Fold one record into the candidates (a hot path: one call per event)."""
        self.records += 1
        record_uuid, event_time, amplitude_id, ehr_id, permanent, changeable = record
        user: UserKey
        if ehr_id is not None:
            user = ehr_id
            fixed = self.permanent.get(ehr_id)
            if fixed is None:
                self.permanent[ehr_id] = PermanentCandidate(
                    ehr_id, record_uuid, event_time, line, list(permanent), permanent
                )
            elif event_time < fixed.event_time:
                fixed.values = _first_non_null(permanent, fixed.values)
                fixed.uuid, fixed.event_time, fixed.line = record_uuid, event_time, line
                fixed.merged = permanent
            elif permanent is not fixed.merged:
                if None in fixed.values:
                    fixed.values = _first_non_null(fixed.values, permanent)
                fixed.merged = permanent
        elif amplitude_id is not None:
            user = amplitude_id
        else:
            self.skipped_without_identity += 1
            return

        latest = self.changeable.get(user)
        if latest is None:
            self.changeable[user] = ChangeableCandidate(
                ehr_id, amplitude_id, record_uuid, event_time, line, changeable
            )
        # compare_changeable's rule, inlined: a plain tuple comparison on the hot path.
        elif event_time >= latest.event_time and changeable != latest.values:
            self.changeable[user] = ChangeableCandidate(
                ehr_id, amplitude_id, record_uuid, event_time, line, changeable, changed_in_batch=True
            )


def _first_non_null(preferred: Any, fallback: Any) -> list[Any]:
    return [value if value is not None else other for value, other in zip(preferred, fallback, strict=True)]
