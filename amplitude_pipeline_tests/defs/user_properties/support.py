"""Helpers for tests of the user-properties jobs and sensors."""

from typing import Any

from sqlalchemy import select

from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline_tests.load.events import event


def permanent_ehr_ids(dwh: DWHRepository) -> list[str]:
    with dwh.engine.connect() as conn:
        return sorted(conn.execute(select(dwh.tables.permanent.c.ehr_id)).scalars())


def patients(day: str, *ehr_ids: str) -> list[dict[str, Any]]:
    return [event(f"{day} {9 + i:02d}:00:00", ehr_id=ehr_id) for i, ehr_id in enumerate(ehr_ids)]
