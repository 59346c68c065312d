"""The bad-input corpus (issue 9) through the real loaders: SeaweedFS, PostgreSQL, both sources.

For every case of cases.yaml an event file is loaded with :func:`load_event_file` (and, where
the case says so, the same records are migrated from ``tmp_user_properties``). A failure must
name the file and line (the row's uuid), commit exactly what precedes it, and say why in a
readable message; a load must store exactly the values the case lists.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import pytest
from sqlalchemy import select, text

from amplitude_pipeline.load.event_files import EventFileLoadError, load_event_file
from amplitude_pipeline.load.tmp_table import TmpRowMigrationError, migrate_tmp_user_properties
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline.text import short_repr
from amplitude_pipeline_tests.corpus.manifest import Case, Outcome, expand, load_cases
from amplitude_pipeline_tests.load.support import forbid_city, rows
from amplitude_pipeline_tests.support import stack_dwh, stack_store

pytestmark = pytest.mark.integration

MESSAGE_LIMIT = 600
TMP_PAGE_SIZE = 2
TABLES = ("changeable", "permanent")
CASES = load_cases()

Tables = dict[str, list[dict[str, Any]]]


def _params(outcome_of: Callable[[Case], Outcome | None]) -> list[Any]:
    params = []
    for case in CASES:
        outcome = outcome_of(case)
        if outcome is None:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=outcome.xfail)] if outcome.xfail else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _params(lambda case: case.outcome))
def test_event_file(
    case: Case, empty_dwh: DWHRepository, store: RawEventStore, clean_load: Callable[[list[bytes]], Tables]
):
    dwh = empty_dwh
    lines = case.lines()
    _set_up(dwh, case)
    key = _upload(store, f"{case.name}.jsonl.gz", case.object_bytes(lines))
    fails, loads = case.outcome.fails, case.outcome.loads

    if fails is not None:
        line = fails["line"]
        with pytest.raises(EventFileLoadError) as raised:
            load_event_file(dwh, store, key, batch_size=case.batch_size)
        failure = raised.value
        assert failure.metadata == {
            "file_key": key,
            "failed_line": line,
            "last_successful_line": line - 1,
            "error_message": failure.error_message,
        }
        assert f"{key}, line {line}: " in str(failure)
        _assert_readable(failure.error_message, fails["message_contains"])
        checkpoint = dwh.get_checkpoint(key)
        assert checkpoint is not None
        assert (checkpoint.last_successful_line, checkpoint.finished) == (line - 1, False)
        _assert_same_tables(dwh, clean_load(lines[:line]))
    else:
        assert loads is not None
        result = load_event_file(dwh, store, key, batch_size=case.batch_size)
        blank = sum(1 for line in lines if not line or line.isspace())
        assert result.records == loads.get("records", len(lines) - blank)
        assert result.blank_lines == loads.get("blank_lines", blank)
        assert result.last_successful_line == len(lines) - 1
        checkpoint = dwh.get_checkpoint(key)
        assert checkpoint is not None
        assert (checkpoint.last_successful_line, checkpoint.finished) == (len(lines) - 1, True)
        _assert_tables_hold(dwh, loads)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", _params(lambda case: case.tmp))
def test_tmp_table(case: Case, empty_dwh: DWHRepository, clean_load: Callable[[list[bytes]], Tables]):
    assert case.tmp is not None
    dwh = empty_dwh
    lines = case.lines()
    records = [line for line in lines if line.strip()]
    _set_up(dwh, case)
    _seed_tmp(dwh, records)
    order = _migration_order(dwh)
    fails, loads = case.tmp.fails, case.tmp.loads

    if fails is not None:
        bad_uuid = json.loads(lines[fails["line"]])["uuid"]
        before = order[: order.index(bad_uuid)]
        with pytest.raises(TmpRowMigrationError) as raised:
            migrate_tmp_user_properties(dwh, page_size=TMP_PAGE_SIZE)
        failure = raised.value
        assert failure.metadata == {
            "uuid": bad_uuid,
            "error_message": failure.error_message,
            "rows_migrated": len(before),
        }
        _assert_readable(failure.error_message, fails["message_contains"])
        assert _migrated(dwh) == {row_uuid: row_uuid in before for row_uuid in order}
        # Both sources share one rule set: the rows before it, as an event file, give the same tables.
        by_uuid = {json.loads(line)["uuid"]: line for line in records}
        _assert_same_tables(dwh, clean_load([by_uuid[row_uuid] for row_uuid in before]))
    else:
        assert loads is not None
        result = migrate_tmp_user_properties(dwh, page_size=TMP_PAGE_SIZE)
        assert result.rows_migrated == len(records)
        assert all(_migrated(dwh).values())
        _assert_tables_hold(dwh, loads)


@pytest.fixture(scope="module")
def store(stack: None) -> RawEventStore:
    """A prefix of the module's own in SeaweedFS (each case's key is its name); one client for
    the module's hundred tiny files, since building one costs a fifth of a second or more."""
    return stack_store(f"test-{uuid.uuid4().hex[:12]}/corpus")


@pytest.fixture(scope="module")
def dwh_schemas(new_module_dwh_schema: Callable[[], DWHRepository]) -> dict[str, DWHRepository]:
    """Two schemas for the whole module, emptied before each use: creating a schema costs more
    than most cases' loads, and the tables are the same for every case."""
    return {"case": new_module_dwh_schema(), "reference": new_module_dwh_schema()}


@pytest.fixture(scope="module")
def new_module_dwh_schema(stack: None) -> Iterator[Callable[[], DWHRepository]]:
    created: list[DWHRepository] = []

    def new_schema() -> DWHRepository:
        repository = stack_dwh(f"test_{uuid.uuid4().hex[:12]}")
        repository.ensure_schema()
        created.append(repository)
        return repository

    yield new_schema
    for repository in created:
        with repository.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{repository.db_schema}" CASCADE'))
        repository.dispose()


@pytest.fixture
def empty_dwh(dwh_schemas: dict[str, DWHRepository]) -> DWHRepository:
    """The case schema with its tables empty (no checkpoints, no unmigrated rows, no constraint a
    case added)."""
    return _emptied(dwh_schemas["case"])


def _emptied(dwh: DWHRepository) -> DWHRepository:
    tables = dwh.tables
    names = ", ".join(
        f'"{dwh.db_schema}"."{table.name}"'
        for table in (tables.permanent, tables.changeable, tables.tmp, tables.checkpoints)
    )
    with dwh.engine.begin() as conn:
        conn.execute(
            text(
                f'ALTER TABLE "{dwh.db_schema}"."{tables.changeable.name}" DROP CONSTRAINT IF EXISTS city_allowed'
            )
        )
        conn.execute(text(f"TRUNCATE {names}"))
    return dwh


@pytest.fixture(scope="module")
def clean_load(
    store: RawEventStore, dwh_schemas: dict[str, DWHRepository]
) -> Callable[[list[bytes]], Tables]:
    """The tables after ``lines`` are loaded in one uninterrupted run into empty tables.

    Most cases fail after the same ordinary lines, so each distinct prefix is loaded only once.
    """
    loaded: dict[bytes, Tables] = {}

    def tables_after(lines: list[bytes]) -> Tables:
        body = Case.gzipped(lines)
        if body not in loaded:
            reference = _emptied(dwh_schemas["reference"])
            key = _upload(store, f"reference-{len(loaded)}.jsonl.gz", body)
            result = load_event_file(reference, store, key, batch_size=100_000)
            assert result.records == sum(1 for line in lines if line.strip())
            loaded[body] = {table: rows(reference, table) for table in TABLES}
        return loaded[body]

    return tables_after


def _upload(store: RawEventStore, name: str, body: bytes) -> str:
    key = f"{store.prefix}/{name}"
    store.client.put_object(Bucket=store.bucket, Key=key, Body=body)
    return key


def _set_up(dwh: DWHRepository, case: Case) -> None:
    if "forbid_city" in case.setup:
        forbid_city(dwh, case.setup["forbid_city"])


def _assert_readable(message: str, words: list[str]) -> None:
    assert len(message) <= MESSAGE_LIMIT, f"{len(message):,} characters: {short_repr(message, 200)}"
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def _assert_same_tables(loaded: DWHRepository, reference: Tables) -> None:
    """The interrupted load holds exactly what a clean load of the lines before the failure holds."""
    for table in TABLES:
        assert rows(loaded, table) == reference[table], table


def _row_key(row: dict[str, Any]) -> str:
    return row["ehr_id"] if row.get("ehr_id") is not None else f"amplitude_id={row['amplitude_id']}"


def _comparable(value: Any) -> Any:
    """Stored and expected values alike: times as ISO text, floats by their repr (so -0.0 ≠ 0.0)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        return ("float", repr(value))
    return value


def _assert_tables_hold(dwh: DWHRepository, loads: dict[str, Any]) -> None:
    for table in TABLES:
        expected: dict[str, dict[str, Any]] = loads[table]
        found = {_row_key(row): row for row in rows(dwh, table)}
        assert sorted(found) == sorted(expected), table
        for key, columns in expected.items():
            for column, value in (columns or {}).items():
                assert column in found[key], f"{table} has no column {column}"
                stored, wanted = _comparable(found[key][column]), _comparable(expand(value))
                assert stored == wanted, (
                    f"{table}[{key}].{column}: {short_repr(stored)} != {short_repr(wanted)}"
                )


def _seed_tmp(dwh: DWHRepository, lines: list[bytes]) -> None:
    """Each line's record as a row of ``tmp_user_properties``, PostgreSQL reading the line itself
    as another system's insert would: ``event_time`` as timestamptz, ``user_properties`` as jsonb
    (which keeps every digit of a number)."""
    if not lines:
        return
    statement = text(
        f'INSERT INTO "{dwh.db_schema}".tmp_user_properties (uuid, amplitude_id, user_properties, event_time) '
        "SELECT CAST(doc->>'uuid' AS uuid), CAST(doc->>'amplitude_id' AS bigint), doc->'user_properties', "
        "CAST(doc->>'event_time' AS timestamptz) FROM (SELECT CAST(:line AS jsonb) AS doc) AS record"
    )
    with dwh.engine.begin() as conn:
        conn.execute(statement, [{"line": line.decode()} for line in lines])


def _migration_order(dwh: DWHRepository) -> list[str]:
    """The rows' uuids in the order CONTRACT §6 migrates them (oldest event_time first)."""
    tmp = dwh.tables.tmp
    with dwh.engine.connect() as conn:
        ordered = conn.scalars(select(tmp.c.uuid).order_by(tmp.c.event_time, tmp.c.uuid))
        return [str(row_uuid) for row_uuid in ordered]


def _migrated(dwh: DWHRepository) -> dict[str, bool]:
    tmp = dwh.tables.tmp
    with dwh.engine.connect() as conn:
        return {str(row.uuid): row.migrated for row in conn.execute(select(tmp.c.uuid, tmp.c.migrated))}
