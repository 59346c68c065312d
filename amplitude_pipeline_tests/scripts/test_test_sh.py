"""``scripts/test.sh`` stops the stack afterwards exactly when it found part of it stopped,
and keeps pytest's exit status.

A copy of the script runs in a scratch checkout whose ``bootstrap.sh``, ``stack.sh``, ruff,
mypy, lint-imports, dg and pytest are fakes that record their calls. The fake ``stack.sh status`` prints more
than a pipe holds, so a ``status | grep -q`` under ``pipefail`` would end in SIGPIPE every
time, not only when the timing is unlucky.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from amplitude_pipeline_tests.scripts.support import REPO_ROOT

FAKE_STACK = """#!/usr/bin/env bash
echo "stack $*" >>"$CALLS"
if [ "$1" = status ]; then
  echo "postgres: ${FAKE_POSTGRES_STATE}"
  for _ in $(seq 20000); do echo "seaweedfs: running"; done
fi
"""
FAKE_TOOL = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >>"$CALLS"
[ "$(basename "$0")" != pytest ] || exit "$FAKE_PYTEST_STATUS"
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO_ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".local" / "stack").mkdir(parents=True)
    (tmp_path / ".local" / "stack" / "stack.env").write_text("")
    fakes = {
        "scripts/bootstrap.sh": "#!/bin/sh\n",
        "scripts/stack.sh": FAKE_STACK,
        ".venv/bin/ruff": FAKE_TOOL,
        ".venv/bin/mypy": FAKE_TOOL,
        ".venv/bin/pytest": FAKE_TOOL,
        ".venv/bin/lint-imports": FAKE_TOOL,
        ".venv/bin/dg": FAKE_TOOL,
    }
    for path, text in fakes.items():
        (tmp_path / path).write_text(text)
        (tmp_path / path).chmod(0o755)
    return tmp_path


def run_test_sh(checkout: Path, postgres_state: str, pytest_status: int) -> tuple[int, list[str]]:
    calls = checkout / "calls"
    result = subprocess.run(
        [str(checkout / "scripts" / "test.sh"), "-q", "-m", "not slow"],
        env={
            "PATH": "/usr/bin:/bin",
            "CALLS": str(calls),
            "FAKE_POSTGRES_STATE": postgres_state,
            "FAKE_PYTEST_STATUS": str(pytest_status),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, calls.read_text().splitlines()


@pytest.mark.parametrize("pytest_status", [0, 1])
def test_a_stack_it_found_stopped_is_stopped_afterwards(checkout: Path, pytest_status: int) -> None:
    returncode, calls = run_test_sh(checkout, "stopped", pytest_status)
    assert returncode == pytest_status
    assert calls == [
        "stack status",
        "stack start",
        "ruff check .",
        "ruff format --check .",
        "mypy ",
        "lint-imports --no-cache",
        "dg check defs",
        "pytest -q -m not slow",
        "stack stop",
    ]


def test_a_running_stack_is_left_running(checkout: Path) -> None:
    returncode, calls = run_test_sh(checkout, "running (/data)", 0)
    assert returncode == 0
    assert calls[0:2] == ["stack status", "stack start"]
    assert "stack stop" not in calls
