"""Fixtures of the fault-injection suite."""

import os
from collections.abc import Callable, Iterator

import pytest

from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.field_mappings import FieldMappingsFile
from amplitude_pipeline_tests.conftest import DEFAULT_MAPPINGS

# Dagster's step retries without their minutes of delay (the fixture of amplitude_events' tests).


@pytest.fixture
def new_dwh(new_dwh_schema: Callable[[], str]) -> Iterator[Callable[[], DWHRepository]]:
    """Repositories over fresh schemas (tables created), disposed of and dropped after the test."""
    created: list[DWHRepository] = []

    def new_repository() -> DWHRepository:
        repository = DWHRepository(
            url=os.environ["DWH_URL"],
            db_schema=new_dwh_schema(),
            field_mappings=FieldMappingsFile(path=str(DEFAULT_MAPPINGS)),
        )
        repository.ensure_schema()
        created.append(repository)
        return repository

    yield new_repository
    for repository in created:
        repository.engine.dispose()
