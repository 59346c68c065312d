"""What a person sees when the CLI meets a broken configuration (issue 9, items 7 and 8)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from amplitude_pipeline_tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGSTER = str(Path(sys.executable).parent / "dagster")
_WARNING_LINE = re.compile(r"^\S+:\d+: \w*Warning: ")


def run_dagster(args: list[str], dagster_home: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    return subprocess.run(
        [DAGSTER, *args],
        env={**os.environ, "DAGSTER_HOME": str(dagster_home), **environment},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def first_line_a_person_reads(stderr: str) -> str:
    """The first line of stderr that is not a Python warning (nor the source line it quotes)."""
    lines = iter(stderr.splitlines())
    for line in lines:
        if _WARNING_LINE.match(line):
            next(lines, None)
            continue
        return line
    return ""


def test_a_bad_mapping_file_is_the_first_thing_the_cli_says(stack, tmp_path):
    mappings = tmp_path / "field_mappings.yaml"
    mappings.write_text("identity: {ehr_id: ehr_id}\nchangeable:\n  age: {type: integer}\n", encoding="utf-8")
    done = run_dagster(
        [
            "asset",
            "materialize",
            "-m",
            "amplitude_pipeline",
            "--select",
            "amplitude_events",
            "--partition",
            "2024-01-08",
        ],
        tmp_path / "home",
        FIELD_MAPPINGS_PATH=str(mappings),
    )
    assert done.returncode != 0
    assert first_line_a_person_reads(done.stderr) == (
        f"amplitude_pipeline cannot load: {mappings}: changeable.age.type: unknown type 'integer' "
        "(expected one of str, int, float, bool, date, datetime)"
    )


def test_a_password_with_an_unescaped_at_reaches_no_output_log_or_event(stack, tmp_path):
    pieces = ("s3cr3t", "tail-of-the-password")
    url = f"postgresql+psycopg://pipeline:{pieces[0]}@{pieces[1]}@127.0.0.1:55432/dwh"
    home = tmp_path / "home"
    done = run_dagster(
        [
            "asset", "materialize", "-m", "amplitude_pipeline",
            "--select", "permanent_user_properties,changeble_user_properties", "--partition", "2024-01-08",
        ],
        home,
        DWH_URL=url,
    )  # fmt: skip
    assert done.returncode != 0
    assert "percent-encode '@'" in done.stdout + done.stderr
    told = [done.stdout, done.stderr]
    told += [path.read_text(errors="replace") for path in home.rglob("*") if path.is_file()]
    for text in told:
        for piece in pieces:
            assert piece not in text
