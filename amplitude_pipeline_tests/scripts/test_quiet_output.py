"""Quiet, honest output: loading the code location prints none of Dagster's notices about the
features it uses on purpose (``amplitude_pipeline.defs``), any other notice still shows, and
the scripts' environment (``scripts/dagster_cli_env.sh``) silences the CLI's supersession
notice for the commands CONTRACT §3 names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amplitude_pipeline_tests.scripts.support import REPO_ROOT, environment_without

LOAD_AND_WARN = """
import warnings
import dagster
import amplitude_pipeline
amplitude_pipeline.defs().get_repository_def()
warnings.warn("another notice", dagster.BetaWarning)
"""


def test_loading_the_code_location_prints_only_notices_that_are_not_ours() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_WARN],
        env=environment_without(lambda name: name == "PYTHONWARNINGS"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["<string>:6: BetaWarning: another notice"]


def dagster_cli(arguments: str, dagster_home: Path, *, scripts_environment: bool) -> str:
    """``dagster arguments``' stderr, in the environment the scripts give it or without it."""
    source = "source scripts/dagster_cli_env.sh && " if scripts_environment else ""
    result = subprocess.run(
        ["bash", "-c", f"{source}exec .venv/bin/dagster {arguments}"],
        env={**environment_without(lambda name: name == "PYTHONWARNINGS"), "DAGSTER_HOME": str(dagster_home)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0  # the selections below do not exist: nothing runs
    return result.stderr


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


@pytest.mark.slow
def test_the_scripts_environment_silences_the_clis_supersession_notice(dagster_home: Path) -> None:
    bare = dagster_cli(
        "job execute -m amplitude_pipeline -j no_such_job", dagster_home, scripts_environment=False
    )
    assert "SupersessionWarning: Function `job_execute_command` is superseded" in bare

    for arguments, error in (
        ("job execute -m amplitude_pipeline -j no_such_job", 'Job "no_such_job" not found'),
        ("asset materialize -m amplitude_pipeline --select no_such_asset", "AssetKey(s) ['no_such_asset']"),
    ):
        stderr = dagster_cli(arguments, dagster_home, scripts_environment=True)
        assert error in stderr  # the command did run
        assert "Warning" not in stderr
