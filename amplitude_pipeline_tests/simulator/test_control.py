"""Control endpoints, for driving a simulator that runs in another process."""

from __future__ import annotations

import requests

from amplitude_pipeline_tests.simulator.support import AUTH, SERVER_CONFIG, export
from amplitude_simulator.server import Fault, SimulatorServer

WINDOW = ("20240108T05", "20240108T06")


def test_health_reports_the_simulated_project(server: SimulatorServer) -> None:
    response = requests.get(f"{server.base_url}/__health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "project_id": SERVER_CONFIG.project_id,
        "seed": SERVER_CONFIG.seed,
        "users": SERVER_CONFIG.users,
        "events_per_day": SERVER_CONFIG.events_per_day,
    }


def test_post_faults_queues_them_for_export_requests(server: SimulatorServer) -> None:
    payload = [
        {"kind": "rate_limited", "retry_after": 2},
        {"kind": "server_error", "status": 502, "count": 2},
    ]
    response = requests.post(f"{server.base_url}/__faults", json=payload, timeout=10)
    assert response.status_code == 200
    assert response.json() == {
        "pending": [
            {"kind": "rate_limited", "count": 1, "retry_after": 2},
            {"kind": "server_error", "count": 2, "status": 502},
        ]
    }
    assert server.pending_faults == [Fault.rate_limited(retry_after=2), Fault.server_error(502, count=2)]
    assert [export(server, *WINDOW).status_code for _ in range(4)] == [429, 502, 502, 200]


def test_post_accepts_a_single_fault_object(server: SimulatorServer) -> None:
    requests.post(f"{server.base_url}/__faults", json={"kind": "gateway_timeout"}, timeout=10)
    assert server.pending_faults == [Fault.gateway_timeout()]


def test_invalid_faults_are_400_and_queue_nothing(server: SimulatorServer) -> None:
    for body in ([{"kind": "rate_limited"}, {"kind": "nope"}], {"kind": "slow", "seconds": -1}):
        response = requests.post(f"{server.base_url}/__faults", json=body, timeout=10)
        assert response.status_code == 400
        assert "Invalid faults" in response.text
    response = requests.post(f"{server.base_url}/__faults", data=b"{not json", timeout=10)
    assert response.status_code == 400
    assert server.pending_faults == []


def test_get_and_delete_faults(server: SimulatorServer) -> None:
    server.add_faults(Fault.html_200(count=3))
    assert requests.get(f"{server.base_url}/__faults", timeout=10).json() == {
        "pending": [{"kind": "html_200", "count": 3}]
    }
    assert requests.delete(f"{server.base_url}/__faults", timeout=10).json() == {"pending": []}
    assert server.pending_faults == []


def test_requests_endpoint_lists_and_clears_the_served_requests(server: SimulatorServer) -> None:
    server.add_faults(Fault.rate_limited())
    export(server, *WINDOW)
    export(server, *WINDOW)
    export(server, *WINDOW, auth=None)
    listed = requests.get(f"{server.base_url}/__requests", timeout=10).json()
    assert listed == [
        {"method": "GET", "path": "/api/2/export", "start": WINDOW[0], "end": WINDOW[1], "status": 429,
         "fault": "rate_limited"},
        {"method": "GET", "path": "/api/2/export", "start": WINDOW[0], "end": WINDOW[1], "status": 200,
         "fault": None},
        {"method": "GET", "path": "/api/2/export", "start": WINDOW[0], "end": WINDOW[1], "status": 401,
         "fault": None},
    ]  # fmt: skip
    assert requests.delete(f"{server.base_url}/__requests", timeout=10).json() == []
    assert server.requests == []


def test_control_endpoints_are_not_recorded_and_methods_are_checked(server: SimulatorServer) -> None:
    requests.get(f"{server.base_url}/__health", timeout=10)
    assert requests.put(f"{server.base_url}/__faults", timeout=10).status_code == 405
    assert server.requests == []
    assert requests.post(server.export_url, auth=AUTH, timeout=10).status_code == 405
    assert [(record.method, record.status) for record in server.requests] == [("POST", 405)]
