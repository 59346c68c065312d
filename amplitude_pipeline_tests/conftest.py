"""Fixtures over the real local stack (scripts/stack.sh): SeaweedFS as S3 and PostgreSQL.

Each test gets its own S3 prefix and its own DWH schema, so tests never see each other's
data. Without the stack's environment the integration tests are skipped locally and fail
in CI (CI=true), where a skipped integration suite would hide a broken stack.
"""

import contextlib
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dagster import RetryPolicy
from sqlalchemy import create_engine, text

from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.prometheus import PrometheusServer, StartPrometheus, prometheus_server
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS, STACK_VARIABLES, NewDWH, stack_dwh, stack_store
from amplitude_simulator import SimulatorServer


def _require_stack(variables: Sequence[str] = STACK_VARIABLES) -> None:
    missing = [name for name in variables if not os.environ.get(name)]
    if not missing:
        return
    message = f"local stack environment missing ({', '.join(missing)}): run scripts/test.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def non_utc_local_time() -> Iterator[None]:
    """The process's local time zone is America/Los_Angeles (UTC-8 in January) during the test.

    A test of how naive datetimes are read passes on a UTC machine whether the code takes them
    as UTC or as local time; under this zone only code that takes them as UTC passes.
    """
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        # Without the zone's tzdata the process would silently stay in UTC, proving nothing.
        assert datetime(2024, 1, 8).astimezone().utcoffset() == timedelta(hours=-8)
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.fixture
def server(shared_server: SimulatorServer) -> Iterator[SimulatorServer]:
    """The package's ``shared_server`` (each package configures its own) with no faults queued
    and an empty request log, before and after the test."""
    shared_server.clear_faults()
    shared_server.clear_requests()
    yield shared_server
    shared_server.clear_faults()
    shared_server.clear_requests()


@pytest.fixture(scope="session")
def stack() -> None:
    _require_stack()


@pytest.fixture
def raw_event_store(stack: None) -> RawEventStore:
    """The stack's bucket under a prefix of the test's own."""
    return stack_store()


@pytest.fixture
def new_dwh_schema(stack: None) -> Iterator[Callable[[], str]]:
    """Names for fresh DWH schemas, all dropped when the test ends."""
    created: list[str] = []

    def new_schema() -> str:
        created.append(f"test_{uuid.uuid4().hex[:12]}")
        return created[-1]

    yield new_schema
    engine = create_engine(os.environ["DWH_URL"])
    with engine.begin() as conn:
        for schema in created:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture
def dwh_schema(new_dwh_schema: Callable[[], str]) -> str:
    return new_dwh_schema()


@pytest.fixture
def new_dwh(new_dwh_schema: Callable[[], str]) -> Iterator[NewDWH]:
    """``new_dwh(mappings=DEFAULT_MAPPINGS, *, schema=None, create=True)``: a DWHRepository on the
    stack, on a fresh schema unless ``schema`` names one (another mapping over the same tables),
    its tables created unless ``create`` is False; every one disposed, every schema dropped, when
    the test ends. The one way a test gets a DWH."""
    made: list[DWHRepository] = []

    def make(
        mappings: Path = DEFAULT_MAPPINGS, *, schema: str | None = None, create: bool = True
    ) -> DWHRepository:
        repository = stack_dwh(schema or new_dwh_schema(), mappings)
        made.append(repository)
        if create:
            repository.ensure_schema()
        return repository

    yield make
    for repository in made:
        repository.dispose()


@pytest.fixture
def dwh(new_dwh: NewDWH, dwh_schema: str) -> DWHRepository:
    return new_dwh(schema=dwh_schema)


@pytest.fixture
def step_retry_delays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Dagster's step retries without their wait (the policy's delays are minutes): the attempt
    numbers Dagster asked the policy to delay, recorded; the retry itself runs at once."""
    asked: list[int] = []

    def no_delay(policy: RetryPolicy, attempt_num: int) -> float:
        asked.append(attempt_num)
        return 0

    monkeypatch.setattr(RetryPolicy, "calculate_delay", no_delay)
    return asked


@pytest.fixture
def pushgateway_url(stack: None) -> str:
    """The stack's Pushgateway (PROMETHEUS_PUSHGATEWAY_URL)."""
    _require_stack(["PROMETHEUS_PUSHGATEWAY_URL"])
    return os.environ["PROMETHEUS_PUSHGATEWAY_URL"]


@pytest.fixture
def start_prometheus(pushgateway_url: str, tmp_path: Path) -> Iterator[StartPrometheus]:
    """``start_prometheus(rule_files)``: a Prometheus server (``amplitude_pipeline_tests.prometheus``)
    scraping the stack's Pushgateway and evaluating ``rule_files`` every second; every server
    started is stopped when the test ends."""
    numbers = itertools.count(1)
    with contextlib.ExitStack() as servers:

        def start(rule_files: Sequence[Path]) -> PrometheusServer:
            directory = tmp_path / f"prometheus-{next(numbers)}"
            return servers.enter_context(prometheus_server(directory, pushgateway_url, rule_files))

        yield start
