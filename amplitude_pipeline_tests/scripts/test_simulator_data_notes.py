"""What ``scripts/dev.sh`` and the README say the local simulator serves is what its defaults
(``SimulatorConfig``, which ``stack.sh`` does not override) generate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from amplitude_pipeline_tests.scripts.support import REPO_ROOT
from amplitude_simulator import SimulatorConfig


@pytest.mark.parametrize("path", ["scripts/dev.sh", "README.md"])
def test_the_weeks_named_are_the_weeks_the_simulators_properties_change_in(path: str) -> None:
    config = SimulatorConfig()
    first_monday = config.history_start
    assert first_monday.weekday() == 0  # a weekly partition starts on it
    last_change_day = config.history_start + timedelta(days=config.history_days - 1)
    last_monday = last_change_day - timedelta(days=last_change_day.weekday())
    weeks = (last_monday - first_monday).days // 7 + 1

    text = " ".join((REPO_ROOT / path).read_text().split())
    assert f"{config.users} users" in text
    assert f"{config.events_per_day:,} events a day" in text
    assert f"{weeks} weeks {first_monday} to {last_monday}" in text
    assert f"from {last_change_day + timedelta(days=1)} on every user keeps their last version" in text


def test_the_stack_runs_the_simulator_with_its_defaults() -> None:
    stack = (REPO_ROOT / "scripts" / "stack.sh").read_text()
    [command] = [line for line in stack.splitlines() if "-m amplitude_simulator" in line]
    assert command.split("-m amplitude_simulator", 1)[1].split() == [
        "--host", "127.0.0.1", "--port", '"$SIM_PORT"', "\\"
    ]  # fmt: skip
