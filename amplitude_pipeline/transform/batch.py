"""A batch of transformed records, resolved into the rows CONTRACT §6 asks for.

The rules are defined record by record: applying a batch must give the rows that applying its
records one by one, in (``event_time``, line) order, onto the stored rows would give. Records
arrive in file order, which is not time order (a device that was offline sends old events
late), so the batch keeps each user's records and resolves them when it is written:

- permanent: per ``ehr_id``, the earliest record sets ``uuid``/``event_time`` and each column
  takes the first non-NULL value in time order (ties: file order). Across batches only stored
  NULLs are filled, which the SQL merge does.
- changeable: per user (``ehr_id``, else ``amplitude_id``), starting from the stored version,
  a record replaces the current version when it is later (strictly, for the stored one; on
  equal times within the batch, the later line) and its values differ. A version seen again
  keeps the ``uuid``/``event_time`` of the record that made it current. This needs the stored
  version, so :meth:`ReducedBatch.changeable_rows` takes it.

A user's records are kept in file order and sorted (stably, so ties stay in file order) only
when one arrived out of time order. Memory grows with the batch's records, which ``batch_size``
bounds; the records share their converted values (:class:`UserPropertiesMemo`), so a record
costs a few hundred bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from amplitude_pipeline.transform.records import TransformedRecord

# An ehr_id (text) or, for anonymous records, an amplitude_id (integer): the types keep the
# two identities apart in one dict.
UserKey = str | int

_by_event_time = attrgetter("event_time")


class StoredVersion(NamedTuple):
    """A user's row as the table holds it: its changeable values and when they were first seen."""

    values: tuple[Any, ...]
    event_time: datetime


class PermanentRow(NamedTuple):
    ehr_id: str
    uuid: str
    event_time: datetime
    values: list[Any]

    def as_row(self) -> tuple[Any, ...]:
        return (self.ehr_id, *self.values, self.uuid, self.event_time)


@dataclass(slots=True)
class ChangeableRow:
    """A user's new row, or the version that replaces the stored one (``replaces_stored``)."""

    user: UserKey
    ehr_id: str | None
    amplitude_id: int | None
    uuid: str
    event_time: datetime
    values: tuple[Any, ...]
    replaces_stored: bool

    def as_row(self) -> tuple[Any, ...]:
        return (self.ehr_id, self.amplitude_id, *self.values, self.uuid, self.event_time)


class ReducedBatch:
    """The records of one batch, per user, and the rows they resolve into."""

    __slots__ = (
        "_disordered",
        "_permanent_rows",
        "_records_by_user",
        "permanent_known",
        "records",
        "skipped_without_identity",
    )

    def __init__(self) -> None:
        self._records_by_user: dict[UserKey, list[TransformedRecord]] = {}
        self._disordered: set[UserKey] = set()
        self._permanent_rows: list[PermanentRow] | None = None
        self.records = 0
        self.skipped_without_identity = 0
        self.permanent_known = 0
        """Permanent rows left out by :meth:`seal`: the stored rows hold their values already."""

    def add(self, record: TransformedRecord) -> None:
        """Keep one record (a hot path: one call per event). Records are added in line order,
        which breaks ties of ``event_time`` (CONTRACT §6)."""
        self.records += 1
        user: UserKey | None = record.ehr_id
        if user is None:
            user = record.amplitude_id
            if user is None:
                self.skipped_without_identity += 1
                return
        kept = self._records_by_user.get(user)
        if kept is None:
            self._records_by_user[user] = [record]
            return
        if record.event_time < kept[-1].event_time:
            self._disordered.add(user)
        kept.append(record)

    def seal(self, stored: StoredPermanentValues) -> None:
        """Resolve the permanent rows now, without those that cannot change what is stored, and
        take no more records. The rows need no database (only stored NULLs are ever filled), so
        this is done where the batch is built, off the process that writes it."""
        rows = []
        for row in self._resolve_permanent_rows():
            if stored.adds_values(row.ehr_id, row.values):
                rows.append(row)
            else:
                self.permanent_known += 1
        self._permanent_rows = rows

    @property
    def users(self) -> int:
        return len(self._records_by_user)

    def user_keys(self) -> tuple[list[str], list[int]]:
        """The batch's users: ``ehr_id``\\ s, and the ``amplitude_id``\\ s of anonymous users."""
        ehr_ids: list[str] = []
        amplitude_ids: list[int] = []
        for user in self._records_by_user:
            (ehr_ids if type(user) is str else amplitude_ids).append(user)  # type: ignore[arg-type]
        return ehr_ids, amplitude_ids

    def _in_time_order(self) -> Mapping[UserKey, list[TransformedRecord]]:
        for user in self._disordered:
            self._records_by_user[user].sort(key=_by_event_time)
        self._disordered.clear()
        return self._records_by_user

    def permanent_rows(self) -> list[PermanentRow]:
        """One row per ``ehr_id``: the earliest record's, each column its first non-NULL value
        (after :meth:`seal`, only the rows that may change what is stored)."""
        if self._permanent_rows is not None:
            return self._permanent_rows
        return self._resolve_permanent_rows()

    def _resolve_permanent_rows(self) -> list[PermanentRow]:
        rows = []
        for user, records in self._in_time_order().items():
            if type(user) is not str:
                continue
            first = records[0]
            values = list(first.permanent)
            if len(records) > 1 and None in values:
                _fill_nulls_in_time_order(values, records)
            rows.append(PermanentRow(user, first.uuid, first.event_time, values))
        return rows

    def changeable_rows(
        self, stored: Mapping[UserKey, StoredVersion], users: Iterable[UserKey] | None = None
    ) -> list[ChangeableRow]:
        """The rows to insert (new users) or to replace (``replaces_stored``) of ``users`` (the
        batch's users, all of them when None); a user whose stored version the batch leaves as it
        is has none."""
        rows = []
        records_by_user = self._in_time_order()
        for user in records_by_user if users is None else users:
            records = records_by_user[user]
            version = stored.get(user)
            if version is None:
                current, current_values, start = records[0], records[0].changeable, 1
            else:
                current, current_values, start = None, version.values, 0
                while start < len(records) and records[start].event_time <= version.event_time:
                    start += 1
            for index in range(start, len(records)):
                record = records[index]
                values = record.changeable
                if values is not current_values and values != current_values:
                    current, current_values = record, values
            if current is not None:
                rows.append(
                    ChangeableRow(
                        user,
                        current.ehr_id,
                        current.amplitude_id,
                        current.uuid,
                        current.event_time,
                        current_values,
                        replaces_stored=version is not None,
                    )
                )
        return rows


def _fill_nulls_in_time_order(values: list[Any], records: list[TransformedRecord]) -> None:
    """Give each NULL of ``values`` the first non-NULL value of its column in ``records``."""
    missing = [index for index, value in enumerate(values) if value is None]
    merged = records[0].permanent
    for record in records:
        snapshot = record.permanent
        if snapshot is merged:  # a user's repeated snapshot is the same tuple (UserPropertiesMemo)
            continue
        merged = snapshot
        still_missing = []
        for index in missing:
            value = snapshot[index]
            if value is None:
                still_missing.append(index)
            else:
                values[index] = value
        if not still_missing:
            return
        missing = still_missing


class StoredPermanentValues:
    """Which permanent columns each user's stored row holds a value in, as far as one load wrote them.

    A user's permanent row, once there, only has its NULLs filled (CONTRACT §6), by any writer:
    a row that offers values only where the stored row has some already changes nothing, and
    need not be written. Most of a week's permanent rows are such repeats (a user seen again in
    a later batch), and writing them cost the loader and PostgreSQL as much as the new ones. A
    user is known once this load has offered their row; what another writer filled meanwhile
    is not known, so such a row is written once more, harmlessly. Holds at most ``max_users``
    users (~100 bytes each: the masks are shared objects), starting afresh when full, so memory
    is bounded however many users a week has.
    """

    __slots__ = ("_columns", "_held", "_masks", "_max_users")

    def __init__(self, max_users: int = 500_000) -> None:
        self._held: dict[str, int] = {}
        self._masks: dict[int, int] = {}
        self._max_users = max_users
        self._columns: list[int] = []

    def adds_values(self, ehr_id: str, values: Sequence[Any]) -> bool:
        """Whether writing ``values`` as ``ehr_id``'s row may change the stored row; from now on
        the stored row counts as holding them."""
        offered = self._held_mask(values)
        held = self._held.get(ehr_id)
        if held is not None and offered & ~held == 0:
            return False
        if held is None and len(self._held) >= self._max_users:
            self._held.clear()
        mask = offered if held is None else held | offered
        self._held[ehr_id] = self._masks.setdefault(mask, mask)
        return True

    def _held_mask(self, values: Sequence[Any]) -> int:
        """One bit per column with a value."""
        if len(self._columns) != len(values):
            self._columns = [1 << index for index in range(len(values))]
        if None not in values:
            return (1 << len(values)) - 1
        mask = 0
        for bit, value in zip(self._columns, values, strict=True):
            if value is not None:
                mask |= bit
        return mask
