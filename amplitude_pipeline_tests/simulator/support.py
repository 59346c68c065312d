"""Constants shared by the simulator's HTTP tests."""

from __future__ import annotations

import io
import zipfile
from datetime import date

import requests

from amplitude_simulator.data import SimulatorConfig
from amplitude_simulator.server import SimulatorServer

API_KEY = "test-api-key"
SECRET_KEY = "test-secret-key-do-not-echo"
AUTH = (API_KEY, SECRET_KEY)

DAY = date(2024, 1, 8)
EMPTY_DAY = date(2024, 1, 9)
BLOCKED_HOUR = (date(2024, 1, 10), 13)
MAX_WINDOW_HOURS = 48

SERVER_CONFIG = SimulatorConfig(
    users=40,
    events_per_day=400,
    empty_days=frozenset({EMPTY_DAY}),
    too_much_data_hours_over=MAX_WINDOW_HOURS,
    too_much_data_hours=frozenset({BLOCKED_HOUR}),
)


def export(
    server: SimulatorServer, start: str, end: str, auth: tuple[str, str] | None = AUTH
) -> requests.Response:
    return requests.get(server.export_url, params={"start": start, "end": end}, auth=auth, timeout=30)


def day_window(day: date) -> tuple[str, str]:
    return f"{day:%Y%m%d}T00", f"{day:%Y%m%d}T23"


def members(response: requests.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
