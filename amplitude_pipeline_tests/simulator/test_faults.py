"""Injected faults: each kind's response, counts and FIFO order."""

from __future__ import annotations

import time
import zipfile

import pytest
import requests

from amplitude_pipeline_tests.simulator.support import DAY, day_window, export, members
from amplitude_simulator.server import TOO_LARGE_MESSAGE, Fault, FaultKind, SimulatorServer

WINDOW = ("20240108T05", "20240108T06")


def test_rate_limited_is_429_with_retry_after_then_normal(server: SimulatorServer) -> None:
    server.add_faults(Fault.rate_limited(retry_after=7))
    limited = export(server, *WINDOW)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert export(server, *WINDOW).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error_uses_the_given_status(server: SimulatorServer, status: int) -> None:
    server.add_faults(Fault.server_error(status=status))
    assert export(server, *WINDOW).status_code == status


def test_gateway_timeout_is_504(server: SimulatorServer) -> None:
    server.add_faults(Fault.gateway_timeout())
    assert export(server, *WINDOW).status_code == 504


def test_too_large_is_400_with_amplitudes_message(server: SimulatorServer) -> None:
    server.add_faults(Fault.too_large())
    response = export(server, *WINDOW)
    assert response.status_code == 400
    assert response.text.strip() == TOO_LARGE_MESSAGE


def test_slow_delays_a_normal_response(server: SimulatorServer) -> None:
    server.add_faults(Fault.slow(0.4))
    started = time.perf_counter()
    response = export(server, *WINDOW)
    assert time.perf_counter() - started >= 0.4
    assert response.status_code == 200
    assert members(response)


def test_slow_can_trigger_a_client_read_timeout(server: SimulatorServer) -> None:
    server.add_faults(Fault.slow(0.5))
    with pytest.raises(requests.ReadTimeout):
        requests.get(server.export_url, params={"start": WINDOW[0], "end": WINDOW[1]}, timeout=0.1)
    # Let the server finish the abandoned request, so it cannot leak into the next test's log.
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [record.fault for record in server.requests] == ["slow"]


def test_truncated_zip_is_a_200_with_half_the_archive(server: SimulatorServer) -> None:
    complete = export(server, *day_window(DAY))
    server.add_faults(Fault.truncated_zip())
    truncated = export(server, *day_window(DAY))
    assert truncated.status_code == 200
    assert truncated.headers["Content-Type"] == "application/zip"
    assert truncated.content == complete.content[: len(complete.content) // 2]
    with pytest.raises(zipfile.BadZipFile):
        members(truncated)


def test_html_200_is_a_page_not_a_zip(server: SimulatorServer) -> None:
    server.add_faults(Fault.html_200())
    response = export(server, *WINDOW)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.content.startswith(b"<html")


def test_connection_reset_closes_without_a_response(server: SimulatorServer) -> None:
    server.add_faults(Fault.connection_reset())
    with pytest.raises(requests.ConnectionError):
        export(server, *WINDOW)
    assert server.requests[-1].status is None
    assert server.requests[-1].fault == "connection_reset"
    assert export(server, *WINDOW).status_code == 200


def test_faults_apply_before_authentication(server: SimulatorServer) -> None:
    server.add_faults(Fault.rate_limited())
    assert export(server, *WINDOW, auth=None).status_code == 429
    assert export(server, *WINDOW, auth=None).status_code == 401


def test_faults_are_consumed_in_order_one_use_per_request(server: SimulatorServer) -> None:
    server.add_faults(Fault.rate_limited(count=2), Fault.server_error(status=503), Fault.gateway_timeout())
    assert [fault.count for fault in server.pending_faults] == [2, 1, 1]
    statuses = [export(server, *WINDOW).status_code for _ in range(5)]
    assert statuses == [429, 429, 503, 504, 200]
    assert [record.fault for record in server.requests] == [
        "rate_limited", "rate_limited", "server_error", "gateway_timeout", None,
    ]  # fmt: skip
    assert server.pending_faults == []


def test_clear_faults_drops_the_queue(server: SimulatorServer) -> None:
    server.add_faults(Fault.server_error(count=3))
    server.clear_faults()
    assert export(server, *WINDOW).status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        Fault.rate_limited(retry_after=3, count=2),
        Fault.server_error(status=502),
        Fault.gateway_timeout(),
        Fault.too_large(),
        Fault.slow(1.5),
        Fault.truncated_zip(),
        Fault.html_200(),
        Fault.connection_reset(count=4),
    ],
    ids=lambda fault: fault.kind.value,
)
def test_faults_round_trip_through_json_form(fault: Fault) -> None:
    assert Fault.from_dict(fault.to_dict()) == fault


def test_every_fault_kind_has_a_constructor() -> None:
    assert {kind.value for kind in FaultKind} == {
        "rate_limited", "server_error", "gateway_timeout", "too_large", "slow", "truncated_zip",
        "html_200", "connection_reset",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "kind"),
        ({"kind": "meteor_strike"}, "unknown fault kind"),
        ({"kind": "slow", "seconds": "1"}, "seconds"),
        ({"kind": "slow", "delay": 1}, "unknown fault field"),
        ({"kind": "server_error", "status": 404}, "500..599"),
        ({"kind": "rate_limited", "count": 0}, "count"),
    ],
)
def test_invalid_faults_are_rejected_with_a_reason(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault.from_dict(data)
