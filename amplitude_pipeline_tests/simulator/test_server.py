"""The export endpoint without faults: archive layout, auth, parameters, size rules."""

from __future__ import annotations

import gzip
import re
from datetime import timedelta

import pytest
import requests

from amplitude_pipeline_tests.simulator.support import (
    AUTH,
    BLOCKED_HOUR,
    DAY,
    EMPTY_DAY,
    SECRET_KEY,
    SERVER_CONFIG,
    day_window,
    export,
    members,
)
from amplitude_simulator.archive import parse_member_name
from amplitude_simulator.data import day_layout, expected_lines
from amplitude_simulator.server import TOO_LARGE_MESSAGE, RequestRecord, SimulatorServer

MEMBER_NAME = re.compile(r"187520/187520_\d{4}-\d{2}-\d{2}_([0-9]|1[0-9]|2[0-3])#\d+\.json\.gz")


def lines_in_canonical_order(response: requests.Response) -> list[bytes]:
    content = members(response)
    lines: list[bytes] = []
    for name in sorted(content, key=parse_member_name):
        data = gzip.decompress(content[name])
        assert data.endswith(b"\n")
        lines.extend(data[:-1].split(b"\n"))
    return lines


def test_urls_point_at_the_bound_port(server: SimulatorServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url)
    assert server.export_url == f"{server.base_url}/api/2/export"


def test_a_day_archive_has_one_amplitude_named_member_per_hour_part(server: SimulatorServer) -> None:
    response = export(server, *day_window(DAY))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert int(response.headers["Content-Length"]) == len(response.content)
    names = list(members(response))
    assert all(MEMBER_NAME.fullmatch(name) for name in names), names
    expected = {f"187520/187520_2024-01-08_{p.hour}#{p.part}.json.gz" for p in day_layout(SERVER_CONFIG, DAY)}
    assert set(names) == expected
    assert len(names) == len(expected)


def test_archive_lines_sorted_by_hour_then_part_are_the_expected_lines(server: SimulatorServer) -> None:
    response = export(server, *day_window(DAY))
    assert lines_in_canonical_order(response) == expected_lines(SERVER_CONFIG, DAY)


def test_member_order_is_shuffled_but_deterministic(server: SimulatorServer) -> None:
    first, second = export(server, *day_window(DAY)), export(server, *day_window(DAY))
    names = list(members(first))
    assert names != sorted(names, key=parse_member_name)
    assert names != sorted(names)
    assert first.content == second.content
    hours_with_parts = {parse_member_name(name)[1] for name in names if name.endswith("#1.json.gz")}
    assert hours_with_parts
    for hour in hours_with_parts:  # parts of a multi-part hour are out of order as well
        parts = [parse_member_name(name)[2] for name in names if parse_member_name(name)[1] == hour]
        assert parts != sorted(parts)


def test_window_hours_are_inclusive(server: SimulatorServer) -> None:
    response = export(server, "20240108T05", "20240108T07")
    assert {parse_member_name(name)[1] for name in members(response)} == {5, 6, 7}
    one_hour = export(server, "20240108T12", "20240108T12")
    assert {parse_member_name(name)[1] for name in members(one_hour)} == {12}


def test_a_window_may_span_days_and_skips_empty_ones(server: SimulatorServer) -> None:
    response = export(server, "20240108T22", "20240110T01")
    days = {parse_member_name(name)[0] for name in members(response)}
    assert days == {DAY, DAY + timedelta(days=2)}


def test_an_empty_day_is_404(server: SimulatorServer) -> None:
    response = export(server, *day_window(EMPTY_DAY))
    assert response.status_code == 404
    assert server.requests[-1].status == 404


@pytest.mark.parametrize(
    "auth",
    [None, ("test-api-key", "wrong-secret"), ("wrong-key", SECRET_KEY)],
    ids=["missing", "wrong-secret", "wrong-key"],
)
def test_bad_credentials_are_401_without_echoing_them(
    server: SimulatorServer, auth: tuple[str, str] | None
) -> None:
    response = export(server, *day_window(DAY), auth=auth)
    assert response.status_code == 401
    assert "Basic" in response.headers["WWW-Authenticate"]
    body = response.text
    assert SECRET_KEY not in body and "wrong" not in body and "test-api-key" not in body


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"end": "20240108T23"}, "start"),
        ({"start": "20240108T00"}, "end"),
        ({"start": "2024-01-08T00", "end": "20240108T23"}, "YYYYMMDDTHH"),
        ({"start": "20240108T24", "end": "20240108T23"}, "hour"),
        ({"start": "20240230T00", "end": "20240230T23"}, "date"),
        ({"start": "20240108T10", "end": "20240108T09"}, "before"),
    ],
)
def test_bad_parameters_are_400_with_a_message(server: SimulatorServer, params: dict, message: str) -> None:
    response = requests.get(server.export_url, params=params, auth=AUTH, timeout=30)
    assert response.status_code == 400
    assert message in response.text


def test_a_window_longer_than_the_limit_is_too_large(server: SimulatorServer) -> None:
    too_long = export(server, "20240111T00", "20240113T00")  # 49 hours
    assert too_long.status_code == 400
    assert too_long.text.strip() == TOO_LARGE_MESSAGE
    assert "exceeds 4GB" in too_long.text
    assert export(server, "20240111T00", "20240112T23").status_code == 200  # 48 hours


def test_a_window_containing_a_too_much_data_hour_is_too_large_even_for_one_hour(
    server: SimulatorServer,
) -> None:
    day, hour = BLOCKED_HOUR
    stamp = f"{day:%Y%m%d}T{hour:02d}"
    assert export(server, stamp, stamp).status_code == 400
    assert export(server, *day_window(day)).status_code == 400
    assert export(server, f"{day:%Y%m%d}T00", f"{day:%Y%m%d}T{hour - 1:02d}").status_code == 200
    assert export(server, f"{day:%Y%m%d}T{hour + 1:02d}", f"{day:%Y%m%d}T23").status_code == 200


def test_requests_are_recorded_with_window_and_status(server: SimulatorServer) -> None:
    export(server, "20240108T05", "20240108T07")
    export(server, *day_window(EMPTY_DAY), auth=None)
    assert server.requests == [
        RequestRecord("GET", "/api/2/export", "20240108T05", "20240108T07", 200),
        RequestRecord("GET", "/api/2/export", "20240109T00", "20240109T23", 401),
    ]


def test_unknown_paths_are_404(server: SimulatorServer) -> None:
    response = requests.get(f"{server.base_url}/api/2/events", auth=AUTH, timeout=30)
    assert response.status_code == 404
    assert server.requests[-1].path == "/api/2/events"


def test_the_server_can_be_stopped_and_the_port_released() -> None:
    with SimulatorServer(SERVER_CONFIG) as server:
        url = server.export_url
        assert export(server, *day_window(DAY), auth=("sim-api-key", "sim-secret-key")).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
