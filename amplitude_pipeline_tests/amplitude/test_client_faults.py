"""Transient faults are retried without duplicating data; permanent ones fail at once."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from amplitude_pipeline.amplitude.client import (
    AmplitudeCredentialsError,
    AmplitudeExportClient,
    AmplitudeExportError,
    AmplitudeUnavailableError,
)
from amplitude_pipeline.retries import RetrySettings
from amplitude_pipeline_tests.amplitude.support import (
    API_KEY,
    CONFIG,
    DAY,
    SECRET_KEY,
    RecordingLog,
    day_content,
    decompressed,
    make_client,
    wait_for_requests,
    windows,
)
from amplitude_simulator import Fault, SimulatorServer

DAY_PARAMS = ("20240108T00", "20240108T23")


@pytest.mark.parametrize(
    ("fault", "first_status"),
    [
        (Fault.server_error(), 500),
        (Fault.server_error(status=503), 503),
        (Fault.connection_reset(), None),
        (Fault.truncated_zip(), 200),
        (Fault.html_200(), 200),
    ],
    ids=["500", "503", "connection_reset", "truncated_zip", "html_200"],
)
def test_transient_fault_is_retried_and_the_day_written_once(
    server: SimulatorServer, sleeps: list[float], tmp_path: Path, fault: Fault, first_status: int | None
) -> None:
    server.add_faults(fault)
    path = tmp_path / "day.jsonl.gz"

    with path.open("wb") as out:
        result = make_client(server, sleeps).export_day(DAY, out)

    assert windows(server) == [(*DAY_PARAMS, first_status), (*DAY_PARAMS, 200)]
    assert [record.fault for record in server.requests] == [fault.kind.value, None]
    assert len(sleeps) == 1
    assert decompressed(io.BytesIO(path.read_bytes())) == day_content(CONFIG, DAY)
    assert result.requests == 2
    assert result.events == len(day_content(CONFIG, DAY).splitlines())


def test_slow_response_past_the_read_timeout_is_retried(server: SimulatorServer, sleeps: list[float]) -> None:
    server.add_faults(Fault.slow(0.6))
    out = io.BytesIO()

    result = make_client(server, sleeps, read_timeout_seconds=0.2).export_day(DAY, out)

    assert decompressed(out) == day_content(CONFIG, DAY)
    assert result.requests == 2
    assert len(sleeps) == 1
    wait_for_requests(server, 2)  # the abandoned slow request is recorded once its delay is over
    assert sorted(str(record.fault) for record in server.requests) == ["None", "slow"]


def test_rate_limit_waits_at_least_retry_after(server: SimulatorServer, sleeps: list[float]) -> None:
    server.add_faults(Fault.rate_limited(retry_after=7))
    out = io.BytesIO()

    make_client(server, sleeps).export_day(DAY, out)

    assert windows(server) == [(*DAY_PARAMS, 429), (*DAY_PARAMS, 200)]
    assert len(sleeps) == 1
    assert sleeps[0] >= 7  # FAST_RETRY's own backoff is at most 0.05 s
    assert decompressed(out) == day_content(CONFIG, DAY)


@pytest.mark.parametrize(
    ("draw", "expected"),
    [("lowest", [0.0, 0.0, 0.0, 0.0]), ("highest", [1.0, 2.0, 4.0, 5.0])],
)
def test_waits_are_full_jitter_below_the_doubling_capped_ceiling(
    server: SimulatorServer,
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    draw: str,
    expected: list[float],
) -> None:
    """Each wait is a uniform draw from [0, min(max, base * 2^(n-1))]: pinning the draw to either
    end shows both bounds (the old client drew from [ceiling/2, ceiling])."""
    pick = (lambda low, high: low) if draw == "lowest" else (lambda low, high: high)
    monkeypatch.setattr("amplitude_pipeline.retries.random.uniform", pick)
    server.add_faults(Fault.server_error(count=4))
    retry = RetrySettings(attempts=5, base_seconds=1.0, max_seconds=5.0)

    make_client(server, sleeps, retry=retry).export_day(DAY, io.BytesIO())

    assert sleeps == expected


def test_exhausted_retries_raise_an_error_naming_the_window_the_attempts_and_the_last_error(
    server: SimulatorServer, sleeps: list[float]
) -> None:
    server.add_faults(Fault.server_error(count=2), Fault.server_error(status=503))
    out = io.BytesIO()
    client = make_client(server, sleeps, retry=RetrySettings(attempts=3, base_seconds=0.01))

    with pytest.raises(AmplitudeUnavailableError) as raised:
        client.export_day(DAY, out)

    assert str(raised.value) == (
        "Amplitude export of 2024-01-08 00:00–23:59 UTC failed after 3 attempts; last error: HTTP 503"
    )
    assert raised.value.transient  # the one export error a later run may not repeat
    assert [record.status for record in server.requests] == [500, 500, 503]
    assert len(sleeps) == 2
    assert out.getvalue() == b""


def test_a_retry_after_of_an_hour_is_capped_and_the_log_says_so(
    server: SimulatorServer, sleeps: list[float]
) -> None:
    server.add_faults(Fault.rate_limited(retry_after=3600))
    log = RecordingLog()
    retry = RetrySettings(attempts=3, base_seconds=0.01, max_seconds=0.05, max_server_wait_seconds=300)

    make_client(server, sleeps, retry=retry, log=log).export_day(DAY, io.BytesIO())

    assert sleeps == [300.0]
    warnings = [message for level, message in log.messages if level == "warning"]
    assert warnings[0] == (
        "Amplitude export of 2024-01-08 00:00–23:59 UTC: the server asked to wait 3600 s before "
        "retrying; waiting 300 s instead (max_server_wait_seconds)"
    )
    assert warnings[1].startswith(
        "Amplitude export of 2024-01-08 00:00–23:59 UTC: AmplitudeTransientError: HTTP 429"
    )
    assert "attempt 1 of 3 failed, retrying in 300.0 s" in warnings[1]
    assert windows(server) == [(*DAY_PARAMS, 429), (*DAY_PARAMS, 200)]


def test_wrong_secret_fails_at_once_without_retrying(server: SimulatorServer, sleeps: list[float]) -> None:
    client = make_client(server, sleeps, secret_key="wrong-secret-5d7e")

    with pytest.raises(AmplitudeCredentialsError):
        client.export_day(DAY, io.BytesIO())

    assert windows(server) == [(*DAY_PARAMS, 401)]
    assert sleeps == []


def test_credentials_error_names_no_key(server: SimulatorServer, sleeps: list[float]) -> None:
    wrong_secret = "wrong-secret-5d7e"
    client = make_client(server, sleeps, secret_key=wrong_secret)

    with pytest.raises(AmplitudeCredentialsError) as raised:
        client.export_day(DAY, io.BytesIO())

    message = str(raised.value)
    assert "AMPLITUDE_SECRET_KEY" in message  # says what to check, by variable name only
    for secret in (API_KEY, SECRET_KEY, wrong_secret):
        assert secret not in message


class _CannedAdapter(requests.adapters.BaseAdapter):
    """Answers every request with the next canned (status, headers) and an empty body."""

    def __init__(self, replies: list[tuple[int, dict[str, str]]]) -> None:
        super().__init__()
        self.replies = replies
        self.sent = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent += 1
        status, headers = self.replies.pop(0)
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(b"")
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "date_format",
    [
        lambda moment: format_datetime(moment, usegmt=True),  # IMF-fixdate
        lambda moment: moment.strftime("%a %b %d %H:%M:%S %Y"),  # asctime: no zone, UTC by definition
    ],
    ids=["imf_fixdate", "asctime"],
)
@pytest.mark.usefixtures("non_utc_local_time")  # an asctime date has no zone: it is UTC
def test_retry_after_as_an_http_date_is_honoured(
    sleeps: list[float], date_format: Callable[[datetime], str]
) -> None:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    client, adapter = canned_client([(429, {"Retry-After": date_format(moment)}), (404, {})], sleeps)

    result = client.export_day(DAY, io.BytesIO())

    assert result.requests == adapter.sent == 2
    assert len(sleeps) == 1
    assert 3600 - 60 <= sleeps[0] <= 3600


def canned_client(
    replies: list[tuple[int, dict[str, str]]], sleeps: list[float]
) -> tuple[AmplitudeExportClient, _CannedAdapter]:
    """A client whose requests get ``replies``; Retry-After is obeyed up to two hours."""
    adapter = _CannedAdapter(replies)
    session = requests.Session()
    session.mount("http://amplitude.test/", adapter)
    client = AmplitudeExportClient(
        "http://amplitude.test/api/2/export",
        API_KEY,
        SECRET_KEY,
        retry=RetrySettings(base_seconds=0.01, max_server_wait_seconds=7200),
        session=session,
        sleep=sleeps.append,
    )
    return client, adapter


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AmplitudeCredentialsError), (403, AmplitudeCredentialsError), (422, AmplitudeExportError)],
)
def test_a_permanent_answer_is_one_request_and_no_retry(
    sleeps: list[float], status: int, error: type[AmplitudeExportError]
) -> None:
    client, adapter = canned_client([(status, {}), (404, {})], sleeps)

    with pytest.raises(error) as raised:
        client.export_day(DAY, io.BytesIO())

    assert type(raised.value) is error
    assert not raised.value.transient
    assert f"HTTP {status}" in str(raised.value)
    assert (adapter.sent, sleeps) == (1, [])
