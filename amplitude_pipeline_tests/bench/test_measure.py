"""The benchmark's per-stage measurement: a stage's peak RSS is its own, not its parent's."""

import os
import sys
from pathlib import Path

from bench.measure import run_measured

ALLOCATE = (
    "import time; block = bytearray({mib} * 2**20); block[::4096] = b'x' * len(block[::4096]); "
    "time.sleep({seconds})"
)


def test_peak_rss_is_the_stage_s_own_even_when_the_orchestrator_is_large(tmp_path: Path) -> None:
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # the parent really holds 300 MiB

    measured = run_measured(
        [sys.executable, "-c", ALLOCATE.format(mib=100, seconds=0.3)],
        env=os.environ,
        log_dir=tmp_path,
        label="stage",
    )

    assert measured.returncode == 0
    assert 100 <= measured.peak_rss_mib < 200
    assert measured.wall_seconds >= 0.3
    del ballast


def test_peak_total_rss_adds_up_processes_alive_at_once(tmp_path: Path) -> None:
    child = ALLOCATE.format(mib=150, seconds=1.0)
    parent = (
        f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        f"{ALLOCATE.format(mib=100, seconds=1.0)}; p.wait()"
    )

    measured = run_measured([sys.executable, "-c", parent], env=os.environ, log_dir=tmp_path, label="tree")

    assert 150 <= measured.peak_rss_mib < 200
    assert measured.peak_total_rss_mib >= 250
