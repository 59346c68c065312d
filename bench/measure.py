"""Run one stage in a fresh process and measure it: wall time, CPU, peak RSS.

Each stage runs under ``bench/wrap.py`` in a session of its own. Its peak RSS is measured two
ways:

- ``peak_rss_mib``: the largest single process: ``ru_maxrss`` from the wrapper's ``wait4`` on
  the stage (Linux folds in the descendants the stage waited for, e.g. Dagster's step
  process), together with the ``VmHWM`` high-water marks sampled from ``/proc`` for every
  process of the session (which also sees descendants nobody waits for);
- ``peak_total_rss_mib``: the largest sum of ``VmRSS`` over the stage's processes at one
  sample (every 0.1 s), i.e. what the stage needed at once (a Dagster CLI run is the CLI
  process plus its step process).

``RUSAGE_CHILDREN`` of the orchestrator would be the maximum over every stage so far, and a
stage forked straight from the orchestrator would inherit its size as a floor (see
``wrap.py``). Server-side CPU (PostgreSQL, SeaweedFS) is read from ``/proc`` before and
after, for the whole machine's processes of those names: indicative only when nothing else
uses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_WRAPPER = Path(__file__).resolve().parent / "wrap.py"
SERVICE_PROCESSES = {"postgres": "postgres_cpu_seconds", "weed": "seaweedfs_cpu_seconds"}


@dataclass
class Measured:
    argv: list[str]
    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    peak_total_rss_mib: float
    service_cpu_seconds: dict[str, float]
    stdout_path: str
    stderr_path: str

    def stdout(self) -> str:
        return Path(self.stdout_path).read_text(errors="replace")

    def stderr(self) -> str:
        return Path(self.stderr_path).read_text(errors="replace")


def _stat_fields(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields after it follow the last ')'.
    head, _, tail = raw.rpartition(")")
    return [head.split("(", 1)[1], *tail.split()]


def _status_kib(pid: int | str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def session_processes(session: int) -> list[int]:
    """Every live process whose session id is ``session``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(entry)) is not None and int(fields[4]) == session:
            pids.append(int(entry))
    return pids


def service_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every process named like the stack's services (and their exited children)."""
    totals = dict.fromkeys(SERVICE_PROCESSES.values(), 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (fields := _stat_fields(entry)) is None:
            continue
        name = SERVICE_PROCESSES.get(fields[0])
        if name is not None:
            # utime, stime, cutime, cstime: fields 14-17 of /proc/pid/stat (fields[n - 2] here). The
            # children's times keep the sum from dropping when a PostgreSQL backend exits: its
            # time moves into the postmaster's cutime/cstime.
            totals[name] += sum(int(value) for value in fields[12:16]) / _CLOCK_TICKS
    return totals


class _SessionSampler:
    def __init__(self, session: int, interval: float = 0.1) -> None:
        self.session = session
        self.interval = interval
        self.peak_process_kib = 0
        self.peak_total_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            total = 0
            for pid in session_processes(self.session):
                if pid == self.session:
                    continue  # the wrapper
                total += _status_kib(pid, "VmRSS:")
                self.peak_process_kib = max(self.peak_process_kib, _status_kib(pid, "VmHWM:"))
            self.peak_total_kib = max(self.peak_total_kib, total)
            if self._stop.wait(self.interval):
                return


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_dir: Path,
    label: str,
    cwd: Path | None = None,
) -> Measured:
    """Run ``argv`` to completion in a new session, stdout/stderr to ``log_dir/label.*``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    usage_path = log_dir / f"{label}.usage.json"
    services_before = service_cpu_seconds()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_WRAPPER), str(usage_path), "--", *argv],
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        with _SessionSampler(process.pid) as sampler:
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(
            f"{label}: the measuring wrapper failed (exit {process.returncode}); see {stderr_path}"
        )
    usage = json.loads(usage_path.read_text())
    services_after = service_cpu_seconds()
    peak_process_kib = max(usage["max_rss_kib"], sampler.peak_process_kib)
    return Measured(
        argv=list(argv),
        returncode=usage["returncode"],
        wall_seconds=round(usage["wall_seconds"], 3),
        cpu_seconds=round(usage["cpu_seconds"], 3),
        peak_rss_mib=round(peak_process_kib / 1024, 1),
        peak_total_rss_mib=round(max(sampler.peak_total_kib, peak_process_kib) / 1024, 1),
        service_cpu_seconds={
            name: round(services_after[name] - services_before[name], 2) for name in services_after
        },
        stdout_path=str(stdout_path),
        stderr_path=str(stderr_path),
    )
