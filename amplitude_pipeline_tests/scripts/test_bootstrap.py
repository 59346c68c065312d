"""``scripts/bootstrap.sh``: a failed ``pip install`` fails the script and writes no stamp, and
pip's "WARNING: Location" noise is filtered out without hiding anything else.

Each test runs a copy of the script in a scratch checkout whose ``.venv/bin/python`` is a fake
that records its calls and answers ``pip install`` with the lines and the status the test
chooses: nothing is installed, and no network is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from amplitude_pipeline_tests.scripts.support import REPO_ROOT

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/calls"
case "$*" in
  *"pip install"*)
    echo "WARNING: Location 'file:///nowhere/simple/pip/' is ignored: it is neither a file nor a directory."
    echo "pip says: $*"
    exit "${FAKE_PIP_STATUS:-0}"
    ;;
esac
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch checkout: the script, pyproject.toml and a fake .venv (python, weed)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(REPO_ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    shutil.copy2(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("weed", "#!/bin/sh\n")):
        (venv_bin / name).write_text(text)
        (venv_bin / name).chmod(0o755)
    return tmp_path


def bootstrap(checkout: Path, pip_status: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / "scripts" / "bootstrap.sh")],
        env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false", "FAKE_PIP_STATUS": str(pip_status)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stamps(checkout: Path) -> list[str]:
    return sorted(path.name for path in (checkout / ".venv").glob(".installed-*"))


def test_a_failed_pip_install_fails_the_script_and_writes_no_stamp(checkout: Path) -> None:
    result = bootstrap(checkout, pip_status=1)
    assert result.returncode != 0
    assert stamps(checkout) == []
    assert "pip says: -m pip install --quiet --upgrade pip" in result.stdout
    assert "[bootstrap] pip install --upgrade pip failed (pip's messages above)" in result.stderr
    assert "WARNING: Location" not in result.stdout + result.stderr
    # Nothing ran after the failed install.
    assert (checkout / ".venv" / "bin" / "calls").read_text().splitlines() == [
        "-m pip install --quiet --upgrade pip"
    ]


@pytest.mark.skipif(
    not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    or not Path("/usr/bin/prometheus-pushgateway").exists()
    or not Path("/usr/bin/prometheus").exists(),
    reason="bootstrap.sh would install PostgreSQL, the Pushgateway or Prometheus from Debian",
)
def test_a_successful_install_writes_the_stamp_and_shows_pips_other_lines(checkout: Path) -> None:
    result = bootstrap(checkout, pip_status=0)
    assert result.returncode == 0, result.stderr
    assert len(stamps(checkout)) == 1
    assert result.stdout.splitlines() == [
        "pip says: -m pip install --quiet --upgrade pip",
        "pip says: -m pip install --quiet -e .[dev]",
    ]
    assert "WARNING: Location" not in result.stderr
    # The stamp is there: a second run installs nothing.
    calls = checkout / ".venv" / "bin" / "calls"
    calls.unlink()
    assert bootstrap(checkout, pip_status=1).returncode == 0
    assert not calls.exists()
