"""The one retry mechanism: full-jitter backoff, transient-only, capped Retry-After, logged waits."""

from __future__ import annotations

import pytest

from amplitude_pipeline.retries import RetrySettings, retrying


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, msg: str, /) -> None:
        pass

    def warning(self, msg: str, /) -> None:
        self.warnings.append(msg)


class Transient(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__(f"busy (retry after {retry_after})")
        self.retry_after = retry_after


def flaky(failures: list[BaseException]):
    calls = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return call, calls


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]
)
def test_backoff_is_full_jitter_below_the_capped_exponential(attempt: int, ceiling: float) -> None:
    settings = RetrySettings(base_seconds=1.0, max_seconds=10.0)
    delays = [settings.backoff(attempt) for _ in range(400)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4


def test_transient_failures_are_retried_and_each_wait_is_logged() -> None:
    log, sleeps = RecordingLog(), []
    call, calls = flaky([Transient(), Transient()])
    result = retrying("fetching", lambda e: isinstance(e, Transient), log=log, sleep=sleeps.append)(call)
    assert (result, len(calls), len(sleeps)) == ("done", 3, 2)
    assert [w.split(";")[0] for w in log.warnings] == ["fetching: Transient: busy (retry after None)"] * 2
    assert "attempt 1 of 6 failed, retrying in" in log.warnings[0]


def test_other_errors_are_raised_at_once() -> None:
    call, calls = flaky([ValueError("bad data")])
    with pytest.raises(ValueError, match="bad data"):
        retrying("loading", lambda e: isinstance(e, Transient), sleep=lambda _: None)(call)
    assert len(calls) == 1


def test_the_last_failure_is_raised_when_the_attempts_run_out() -> None:
    call, calls = flaky([Transient(1), Transient(2), Transient(3)])
    settings = RetrySettings(attempts=3)
    with pytest.raises(Transient, match="retry after 3"):
        retrying("x", lambda e: isinstance(e, Transient), settings=settings, sleep=lambda _: None)(call)
    assert len(calls) == 3


def test_a_servers_retry_after_is_a_floor_for_the_wait() -> None:
    sleeps: list[float] = []
    call, _ = flaky([Transient(retry_after=30.0)])
    settings = RetrySettings(base_seconds=0.01, max_seconds=0.02)
    retrying(
        "x",
        lambda e: isinstance(e, Transient),
        settings=settings,
        server_wait=lambda e: getattr(e, "retry_after", None),
        sleep=sleeps.append,
    )(call)
    assert sleeps == [30.0]


def test_a_retry_after_beyond_the_cap_is_cut_and_said() -> None:
    log, sleeps = RecordingLog(), []
    call, _ = flaky([Transient(retry_after=3600.0)])
    settings = RetrySettings(max_server_wait_seconds=60.0)
    retrying(
        "export",
        lambda e: isinstance(e, Transient),
        settings=settings,
        log=log,
        server_wait=lambda e: getattr(e, "retry_after", None),
        sleep=sleeps.append,
    )(call)
    assert sleeps == [60.0]
    assert "asked to wait 3600 s before retrying; waiting 60 s instead" in log.warnings[0]


def test_the_last_attempt_announces_no_wait_it_will_not_make() -> None:
    log, sleeps = RecordingLog(), []
    call, calls = flaky([Transient(retry_after=3600.0), Transient(retry_after=3600.0)])
    settings = RetrySettings(attempts=2, max_server_wait_seconds=60.0)
    with pytest.raises(Transient):
        retrying(
            "export",
            lambda e: isinstance(e, Transient),
            settings=settings,
            log=log,
            server_wait=lambda e: getattr(e, "retry_after", None),
            sleep=sleeps.append,
        )(call)
    assert (len(calls), sleeps) == (2, [60.0])
    assert sum("asked to wait 3600 s" in warning for warning in log.warnings) == 1
    assert "attempt 2 of 2" not in " ".join(log.warnings)
