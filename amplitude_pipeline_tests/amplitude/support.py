"""Constants and helpers shared by the Export API client tests."""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable
from datetime import date

from amplitude_pipeline.amplitude.client import AmplitudeExportClient
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import RetrySettings
from amplitude_simulator import SimulatorConfig, SimulatorServer, expected_lines

# Distinctive values, so that a leak is found by a plain substring search.
API_KEY = "apikey-7f3c91d2e4b5"
SECRET_KEY = "secret-a84e02c6f19d"

WEEK_START = date(2024, 1, 8)  # a Monday
DAY = date(2024, 1, 8)
EMPTY_DAY = date(2024, 1, 10)

# Several parts in many hours, up to part #11: the archive's member order is shuffled, and
# "#10"/"#11" sort before "#2" by name, so only a numeric (hour, part) sort yields the right bytes.
CONFIG = SimulatorConfig(
    users=30,
    events_per_day=300,
    empty_days=frozenset({EMPTY_DAY}),
    multi_part_hour_fraction=0.5,
    max_parts_per_hour=12,
)

# Small delays: the tests record them instead of sleeping, but they must stay below the
# Retry-After values used, so that honouring Retry-After is observable.
FAST_RETRY = RetrySettings(attempts=4, base_seconds=0.01, max_seconds=0.05)


def day_content(config: SimulatorConfig, day: date) -> bytes:
    """The decompressed bytes a correct export of ``day`` holds: its lines, each newline-terminated."""
    lines = expected_lines(config, day)
    return b"".join(line + b"\n" for line in lines)


def decompressed(out: io.BytesIO) -> bytes:
    return gzip.decompress(out.getvalue())


def make_client(
    server: SimulatorServer,
    sleeps: list[float],
    *,
    secret_key: str = SECRET_KEY,
    retry: RetrySettings = FAST_RETRY,
    read_timeout_seconds: float = 10.0,
    log: Log | None = None,
) -> AmplitudeExportClient:
    sleep: Callable[[float], None] = sleeps.append
    return AmplitudeExportClient(
        server.export_url,
        API_KEY,
        secret_key,
        retry=retry,
        connect_timeout_seconds=5.0,
        read_timeout_seconds=read_timeout_seconds,
        sleep=sleep,
        log=log,
    )


def windows(server: SimulatorServer) -> list[tuple[str | None, str | None, int | None]]:
    """The served export requests as (start, end, status)."""
    return [(record.start, record.end, record.status) for record in server.requests]


def wait_for_requests(server: SimulatorServer, count: int, timeout: float = 5.0) -> None:
    """Wait until the server has recorded ``count`` requests (an abandoned slow one records late)."""
    deadline = time.monotonic() + timeout
    while len(server.requests) < count and time.monotonic() < deadline:
        time.sleep(0.01)


class RecordingLog:
    """A ``Log`` that keeps every message, as Dagster's context.log would show them."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def info(self, msg: str, /) -> None:
        self.messages.append(("info", msg))

    def warning(self, msg: str, /) -> None:
        self.messages.append(("warning", msg))
