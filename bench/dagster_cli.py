"""This project's stages the way a user runs them: ``dagster asset materialize`` in a fresh process.

The runs use a Dagster instance of the benchmark's own (a temporary ``DAGSTER_HOME``: SQLite
storage, created by the first run, which is the start-up's first repetition;
:func:`new_instance_home`), so each run's event log can be read back: the step's time and the
materializations' metadata (``duration_seconds``: the load's or the export's own time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Measured, run_measured

REPO = Path(__file__).resolve().parent.parent
DAGSTER = REPO / ".venv" / "bin" / "dagster"
TABLE_ASSETS = "permanent_user_properties,changeble_user_properties"
EXPORT_ASSET = "amplitude_events"


@dataclass
class CliRun:
    measured: Measured
    run_status: str | None = None
    run_seconds: float | None = None
    steps_seconds: dict[str, float] = field(default_factory=dict)
    materializations: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.measured.returncode == 0 and self.run_status == "SUCCESS"

    def metadata(self, asset: str, name: str) -> Any:
        return self.materializations.get(asset, {}).get(name)


def new_instance_home(directory: Path) -> Path:
    """A SQLite instance of the benchmark's own, set as the project's is where that costs a run
    time: telemetry off (dagster.yaml), and one event log database for all runs, as the project's
    PostgreSQL storage is. Dagster's default SQLite event log makes a database for each run and
    stamps its schema revision (alembic loads its migration scripts): ~0.15 s of every run's
    start-up that no deployment of the project pays."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster.yaml").write_text(
        "telemetry:\n"
        "  enabled: false\n"
        "event_log_storage:\n"
        "  module: dagster.core.storage.event_log\n"
        "  class: ConsolidatedSqliteEventLogStorage\n"
        "  config:\n"
        f"    base_dir: {directory / 'history'}\n"
    )
    return directory


def cli_env(base: Mapping[str, str], home: Path, **overrides: str) -> dict[str, str]:
    """The stack's environment for one run; no Pushgateway (the bench's runs would pollute it)."""
    env = {**base, "DAGSTER_HOME": str(home), **overrides}
    env.pop("PROMETHEUS_PUSHGATEWAY_URL", None)
    return env


def materialize(
    select: str,
    partition: str,
    *,
    env: Mapping[str, str],
    log_dir: Path,
    label: str,
    wrap: list[str] | None = None,
) -> CliRun:
    """Run ``dagster asset materialize`` for ``select``/``partition`` and read the run back."""
    argv = [
        *(wrap or []),
        str(DAGSTER), "asset", "materialize", "-m", "amplitude_pipeline",
        "--select", select, "--partition", partition,
    ]  # fmt: skip
    measured = run_measured(argv, env=env, log_dir=log_dir, label=label, cwd=REPO)
    run = CliRun(measured)
    _read_latest_run(Path(env["DAGSTER_HOME"]), run)
    return run


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)
    return value if isinstance(value, int | float | str | bool) or value is None else None


def _read_latest_run(home: Path, run: CliRun) -> None:
    from dagster import DagsterEventType, DagsterInstance

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return
            dagster_run = runs[0]
            run.run_status = dagster_run.status.value
            stats = instance.get_run_stats(dagster_run.run_id)
            if stats.start_time and stats.end_time:
                run.run_seconds = round(stats.end_time - stats.start_time, 3)
            started: dict[str, float] = {}
            for entry in instance.all_logs(dagster_run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.STEP_START and event.step_key:
                    started[event.step_key] = entry.timestamp
                elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                    if event.step_key in started:
                        run.steps_seconds[event.step_key] = round(
                            entry.timestamp - started[event.step_key], 3
                        )
                elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                    materialization = event.step_materialization_data.materialization
                    run.materializations[materialization.asset_key.to_user_string()] = {
                        name: _plain(value) for name, value in materialization.metadata.items()
                    }
                elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                    evaluation = event.asset_check_evaluation_data
                    run.checks[evaluation.check_name] = {
                        "passed": evaluation.passed,
                        **{name: _plain(value) for name, value in evaluation.metadata.items()},
                    }
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
