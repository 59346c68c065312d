"""DWH helpers for loader tests: reading the tables, constraining them, seeding tmp_user_properties."""

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select, text

from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.transform.batch import ReducedBatch
from amplitude_pipeline_tests.load.events import BASE_PROPERTIES

T0 = datetime(2024, 1, 8, tzinfo=UTC)


def rows(dwh: DWHRepository, table_name: str) -> list[dict[str, Any]]:
    table = getattr(dwh.tables, table_name)
    columns = [column for column in table.columns if column.name != "loaded_at"]
    with dwh.engine.connect() as conn:
        result = conn.execute(select(*columns))
        found = [dict(row._mapping) for row in result]
    return sorted(found, key=lambda row: (str(row.get("ehr_id")), str(row.get("amplitude_id"))))


def forbid_city(dwh: DWHRepository, city: str) -> None:
    """A constraint the DWH's owners might add: the database, not the transform, refuses a value."""
    with dwh.engine.begin() as conn:
        conn.execute(
            text(
                f'ALTER TABLE "{dwh.db_schema}".changeble_user_properties '
                f"ADD CONSTRAINT city_allowed CHECK (city IS DISTINCT FROM '{city}')"
            )
        )


def tmp_row(seconds: int, *, ehr_id: str | None, amplitude_id: int | None = None, **properties: Any) -> dict:
    user_properties = {**BASE_PROPERTIES, **properties}
    if ehr_id is not None:
        user_properties["ehr_id"] = ehr_id
    return {
        "uuid": str(uuid.uuid4()),
        "amplitude_id": amplitude_id,
        "user_properties": user_properties,
        "event_time": T0 + timedelta(seconds=seconds),
    }


def seed(dwh: DWHRepository, rows_to_insert: list[dict]) -> None:
    with dwh.engine.begin() as conn:
        conn.execute(insert(dwh.tables.tmp), rows_to_insert)


def migrated_flags(dwh: DWHRepository) -> dict[str, bool]:
    tmp = dwh.tables.tmp
    with dwh.engine.connect() as conn:
        return {row.uuid: row.migrated for row in conn.execute(select(tmp.c.uuid, tmp.c.migrated))}


def fail_a_batch_write(
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    *,
    on_call: int = 2,
    before_raising: Callable[[], object] | None = None,
) -> list[int]:
    """Make ``DWHRepository.write_batch`` raise ``error`` on its ``on_call``-th call only (after
    ``before_raising``); every other call writes. Returns each call's record count, as it grows."""
    real_write_batch = DWHRepository.write_batch
    calls: list[int] = []

    def write_batch(self: DWHRepository, conn: Connection, batch: ReducedBatch) -> Any:
        calls.append(batch.records)
        if len(calls) == on_call:
            if before_raising is not None:
                before_raising()
            raise error
        return real_write_batch(self, conn, batch)

    monkeypatch.setattr(DWHRepository, "write_batch", write_batch)
    return calls


def line_worker_pids() -> Iterator[int]:
    """The line worker processes (amplitude_pipeline.load.line_worker) this process started."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as command:
                is_worker = b"amplitude_pipeline.load.line_worker" in command.read()
        except OSError:
            continue
        if parent == os.getpid() and is_worker:
            yield int(entry)
