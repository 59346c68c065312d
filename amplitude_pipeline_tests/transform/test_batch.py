"""CONTRACT §6's rules for one batch, each a case, and a property: the batch's rows always equal
applying its records one by one in (event_time, line) order onto what the table holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amplitude_pipeline.transform.batch import ReducedBatch, StoredPermanentValues, StoredVersion
from amplitude_pipeline.transform.records import TransformedRecord

T0 = datetime(2024, 1, 8, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def rec(
    name: str,
    minute: int,
    *,
    ehr: str | None = "E1",
    amp: int | None = 1,
    gender: str | None = None,
    city: str | None = "A",
) -> TransformedRecord:
    """A record named ``name`` (its uuid), with one permanent (gender) and one changeable (city) column."""
    return TransformedRecord(name, at(minute), amp, ehr, (gender,), (city,))


def batch_of(*records: TransformedRecord) -> ReducedBatch:
    batch = ReducedBatch()
    for record in records:
        batch.add(record)
    return batch


def permanent(batch: ReducedBatch) -> dict[str, tuple[str, datetime, tuple[Any, ...]]]:
    return {row.ehr_id: (row.uuid, row.event_time, tuple(row.values)) for row in batch.permanent_rows()}


def changeable(
    batch: ReducedBatch, stored: dict[Any, StoredVersion] | None = None
) -> dict[Any, tuple[str, datetime, tuple[Any, ...], bool]]:
    return {
        row.user: (row.uuid, row.event_time, tuple(row.values), row.replaces_stored)
        for row in batch.changeable_rows(stored or {})
    }


def prec(name: str, minute: int, ehr: str, *values: Any) -> TransformedRecord:
    """A record with as many permanent columns as ``values``."""
    return TransformedRecord(name, at(minute), 1, ehr, values, ("A",))


class TestSealing:
    """A sealed batch leaves out the permanent rows that cannot change what this load wrote."""

    def test_a_user_s_row_is_written_while_it_offers_a_value_not_written_before(self):
        stored = StoredPermanentValues()
        batches = [
            batch_of(prec("a", 1, "E1", "m", None), prec("b", 1, "E2", None, None)),
            batch_of(prec("c", 2, "E1", "m", None), prec("d", 2, "E2", None, None)),
            batch_of(prec("e", 3, "E1", None, "1990-01-01"), prec("f", 3, "E2", "f", None)),
            batch_of(prec("g", 4, "E1", "m", "1990-01-01"), prec("h", 4, "E2", "f", None)),
        ]
        written = []
        for batch in batches:
            batch.seal(stored)
            written.append(([row.ehr_id for row in batch.permanent_rows()], batch.permanent_known))
        assert written == [(["E1", "E2"], 0), ([], 2), (["E1", "E2"], 0), ([], 2)]

    def test_a_row_without_any_value_is_written_once(self):
        stored = StoredPermanentValues()
        first, again = batch_of(prec("a", 1, "E1", None)), batch_of(prec("b", 2, "E1", None))
        first.seal(stored)
        again.seal(stored)
        assert ([row.uuid for row in first.permanent_rows()], again.permanent_rows()) == (["a"], [])

    def test_a_full_memory_starts_afresh_and_writes_again(self):
        stored = StoredPermanentValues(max_users=2)
        assert [stored.adds_values(ehr, ("m",)) for ehr in ("E1", "E2", "E3", "E1", "E3")] == [
            True, True, True, True, False,
        ]  # fmt: skip

    def test_sealing_resolves_the_rows_as_an_unsealed_batch_does(self):
        records = [
            prec("late", 9, "E1", "m", None),
            prec("early", 2, "E1", None, "x"),
            prec("z", 5, "E2", None, None),
        ]
        sealed = batch_of(*records)
        sealed.seal(StoredPermanentValues())
        assert permanent(sealed) == permanent(batch_of(*records))


class TestPermanent:
    def test_the_earliest_record_sets_uuid_and_event_time_whatever_the_file_order(self):
        batch = batch_of(rec("late", 9, gender="m"), rec("early", 2, gender="m"))
        assert permanent(batch) == {"E1": ("early", at(2), ("m",))}

    def test_each_column_takes_the_first_non_null_value_in_time_order(self):
        # Issue 11: A (t=1, NULL), B (t=3, x), C (t=2, y) in file order A, B, C give y.
        batch = batch_of(rec("A", 1, gender=None), rec("B", 3, gender="x"), rec("C", 2, gender="y"))
        assert permanent(batch) == {"E1": ("A", at(1), ("y",))}

    def test_equal_times_keep_file_order(self):
        batch = batch_of(rec("first", 5, gender="x"), rec("second", 5, gender="y"))
        assert permanent(batch) == {"E1": ("first", at(5), ("x",))}

    def test_a_later_record_fills_only_the_columns_still_null(self):
        first = TransformedRecord("first", at(1), 1, "E1", ("m", None), ("A",))
        later = TransformedRecord("later", at(2), 1, "E1", ("f", "1990-05-17"), ("A",))
        assert permanent(batch_of(later, first)) == {"E1": ("first", at(1), ("m", "1990-05-17"))}

    def test_records_without_an_ehr_id_never_reach_it(self):
        batch = batch_of(rec("anon", 1, ehr=None, amp=7, gender="x"))
        assert permanent(batch) == {}


class TestChangeableWithinABatch:
    def test_the_latest_record_wins(self):
        batch = batch_of(rec("new", 5, city="B"), rec("old", 1, city="A"))
        assert changeable(batch) == {"E1": ("new", at(5), ("B",), False)}

    def test_a_later_record_with_the_same_values_keeps_when_the_version_was_first_seen(self):
        batch = batch_of(rec("first", 1, city="A"), rec("again", 4, city="A"))
        assert changeable(batch) == {"E1": ("first", at(1), ("A",), False)}

    def test_on_equal_event_time_the_later_line_wins(self):
        batch = batch_of(rec("one", 3, city="A"), rec("two", 3, city="B"))
        assert changeable(batch) == {"E1": ("two", at(3), ("B",), False)}

    def test_a_version_seen_again_after_another_is_seen_anew(self):
        batch = batch_of(rec("A1", 1, city="A"), rec("B2", 2, city="B"), rec("A3", 3, city="A"))
        assert changeable(batch) == {"E1": ("A3", at(3), ("A",), False)}

    def test_records_out_of_time_order_are_applied_in_time_order(self):
        # A at 1, A at 5, then B at 3 arrives: in time order A1, B3, A5, so A as first seen at 5.
        batch = batch_of(rec("A1", 1, city="A"), rec("A5", 5, city="A"), rec("B3", 3, city="B"))
        assert changeable(batch) == {"E1": ("A5", at(5), ("A",), False)}

    def test_anonymous_records_are_kept_per_amplitude_id_and_identityless_ones_skipped(self):
        batch = batch_of(
            rec("x", 1, ehr=None, amp=11, city="A"),
            rec("y", 2, ehr=None, amp=11, city="B"),
            rec("z", 1, ehr=None, amp=None),
            rec("w", 2, ehr=None, amp=None),
        )
        assert changeable(batch) == {11: ("y", at(2), ("B",), False)}
        assert (batch.records, batch.skipped_without_identity) == (4, 2)

    def test_a_patients_row_keeps_the_amplitude_id_of_the_record_that_set_it(self):
        batch = batch_of(rec("a", 1, amp=1, city="A"), rec("b", 2, amp=2, city="B"))
        (row,) = batch.changeable_rows({})
        assert (row.ehr_id, row.amplitude_id) == ("E1", 2)


class TestChangeableAgainstTheStoredRow:
    def test_records_not_strictly_later_than_the_stored_row_change_nothing(self):
        stored = {"E1": StoredVersion(("S",), at(10))}
        assert changeable(batch_of(rec("old", 5, city="B"), rec("same-time", 10, city="C")), stored) == {}

    def test_a_later_record_with_other_values_replaces_it(self):
        stored = {"E1": StoredVersion(("S",), at(10))}
        assert changeable(batch_of(rec("new", 11, city="B")), stored) == {"E1": ("new", at(11), ("B",), True)}

    def test_a_later_record_with_the_stored_values_keeps_it(self):
        stored = {"E1": StoredVersion(("A",), at(10))}
        assert changeable(batch_of(rec("B5", 5, city="B"), rec("A12", 12, city="A")), stored) == {}

    def test_a_version_spanning_the_stored_rows_time_replaces_it_from_its_first_later_record(self):
        stored = {"E1": StoredVersion(("B",), at(10))}
        batch = batch_of(rec("A5", 5, city="A"), rec("A15", 15, city="A"), rec("A20", 20, city="A"))
        assert changeable(batch, stored) == {"E1": ("A15", at(15), ("A",), True)}

    def test_a_flip_and_back_within_the_batch_replaces_even_equal_stored_values(self):
        stored = {"E1": StoredVersion(("A",), at(1))}
        batch = batch_of(rec("B2", 2, city="B"), rec("A3", 3, city="A"))
        assert changeable(batch, stored) == {"E1": ("A3", at(3), ("A",), True)}


def test_user_keys_are_the_ehr_ids_and_the_amplitude_ids_of_anonymous_users():
    batch = batch_of(
        rec("a", 1, ehr="E1", amp=7),
        rec("b", 1, ehr=None, amp=7),
        rec("c", 2, ehr="E2", amp=8),
        rec("d", 3, ehr=None, amp=9),
        rec("e", 4, ehr=None, amp=7),
    )
    assert batch.user_keys() == (["E1", "E2"], [7, 9])
    assert batch.users == 4


# -- the property: any batch, any stored rows, equals the one-by-one application ---------


@dataclass
class Row:
    uuid: str | None  # None: the stored row, untouched
    event_time: datetime
    values: tuple[Any, ...]
    amplitude_id: int | None = None


def apply_one_by_one(
    records: list[TransformedRecord], stored: dict[Any, StoredVersion]
) -> tuple[dict[str, tuple[str, datetime, tuple[Any, ...]]], dict[Any, Row]]:
    """CONTRACT §6 read literally: each record in (event_time, line) order, onto the stored rows."""
    in_time_order = sorted(enumerate(records), key=lambda item: (item[1].event_time, item[0]))
    permanent_rows: dict[str, list[Any]] = {}
    state: dict[Any, Row] = {
        user: Row(None, version.event_time, version.values) for user, version in stored.items()
    }
    for _, record in in_time_order:
        if record.ehr_id is not None:
            row = permanent_rows.get(record.ehr_id)
            if row is None:
                permanent_rows[record.ehr_id] = [record.uuid, record.event_time, list(record.permanent)]
            else:
                row[2] = [
                    old if old is not None else new for old, new in zip(row[2], record.permanent, strict=True)
                ]
        user = record.ehr_id if record.ehr_id is not None else record.amplitude_id
        if user is None:
            continue
        current = state.get(user)
        later = (
            current is None
            or record.event_time > current.event_time
            or (record.event_time == current.event_time and current.uuid is not None)
        )
        if current is None or (later and record.changeable != current.values):
            state[user] = Row(record.uuid, record.event_time, record.changeable, record.amplitude_id)
    return (
        {ehr: (row[0], row[1], tuple(row[2])) for ehr, row in permanent_rows.items()},
        {user: row for user, row in state.items() if row.uuid is not None},
    )


values = st.sampled_from([None, "a", "b"])
records_strategy = st.lists(
    st.builds(
        lambda n, minute, user, permanent_values, city: TransformedRecord(
            f"r{n}",
            at(minute),
            user % 3 if user < 6 else None,
            f"E{user}" if user < 3 else None,
            permanent_values,
            (city,),
        ),
        st.integers(0, 10**6),
        st.integers(0, 8),
        st.integers(0, 6),
        st.tuples(values, values),
        values,
    ),
    max_size=25,
)
stored_strategy = st.dictionaries(
    st.sampled_from(["E0", "E1", "E2", 0, 1, 2]),
    st.builds(lambda city, minute: StoredVersion((city,), at(minute)), values, st.integers(0, 8)),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(records_strategy, stored_strategy)
def test_a_batch_equals_applying_its_records_one_by_one(records, stored):
    records = [record._replace(uuid=f"{record.uuid}-{i}") for i, record in enumerate(records)]
    expected_permanent, expected_changeable = apply_one_by_one(records, stored)
    batch = batch_of(*records)

    assert permanent(batch) == expected_permanent
    assert {
        row.user: (row.uuid, row.event_time, tuple(row.values), row.amplitude_id)
        for row in batch.changeable_rows(stored)
    } == {
        user: (row.uuid, row.event_time, row.values, row.amplitude_id)
        for user, row in expected_changeable.items()
    }
    assert {row.user for row in batch.changeable_rows(stored) if row.replaces_stored} == (
        set(expected_changeable) & set(stored)
    )


@pytest.mark.parametrize("batch", [ReducedBatch(), batch_of(rec("x", 1, ehr=None, amp=None))])
def test_an_empty_batch_writes_nothing(batch):
    assert (batch.permanent_rows(), batch.changeable_rows({})) == ([], [])
