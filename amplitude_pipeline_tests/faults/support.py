"""Helpers of the fault-injection suite: a week that takes many batches, the Dagster CLI in a
process of its own, and the comparisons a fault test ends with."""

import functools
import gzip
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from dagster import AssetKey, DagsterInstance

from amplitude_pipeline.storage.dwh import DWHRepository, FileCheckpoint
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.defs.support import WEEK
from amplitude_pipeline_tests.load.support import rows
from amplitude_pipeline_tests.support import REPO_ROOT
from amplitude_simulator import SimulatorConfig, expected_week_lines

DAGSTER = str(Path(sys.executable).parent / "dagster")
MONDAY = date.fromisoformat(WEEK)
# 21,000 realistic events (~1.8 KB each; ~5 MB compressed, ~38 MB of JSON): with BATCH_SIZE lines
# per transaction a load takes dozens of commits, a few seconds in all.
BIG_WEEK = SimulatorConfig(users=2000, events_per_day=3000)
BATCH_SIZE = 500
TABLES_SELECTION = "permanent_user_properties,changeble_user_properties"

T = TypeVar("T")


@functools.cache
def big_week_lines() -> tuple[bytes, ...]:
    return tuple(expected_week_lines(BIG_WEEK, MONDAY))


@functools.cache
def big_week_object() -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in big_week_lines()), compresslevel=6)


def upload_big_week(store: RawEventStore) -> str:
    """The big week as the weekly object of ``store`` (as ``amplitude_events`` would leave it)."""
    key = store.week_key(WEEK)
    store.client.put_object(Bucket=store.bucket, Key=key, Body=big_week_object())
    return key


def table_rows(dwh: DWHRepository) -> dict[str, list[dict[str, Any]]]:
    """Both tables, every column but ``loaded_at``, in a stable order."""
    return {table: rows(dwh, table) for table in ("permanent", "changeable")}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.02) -> T:
    """The first value ``probe`` returns that is not None; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class TablesRun:
    """``dagster asset materialize`` of the week's two tables, in a session of its own (so that it
    can be killed with every process it started) and a Dagster instance of its own (SQLite under
    ``dagster_home``: the run's own bookkeeping does not touch the stack's PostgreSQL)."""

    def __init__(self, name: str, dagster_home: Path, store: RawEventStore, dwh: DWHRepository) -> None:
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
        config = dagster_home / "run_config.yaml"
        # The code location's executor runs steps in process: the run is the CLI's one process.
        config.write_text(
            f"ops:\n  user_properties_tables:\n    config:\n      batch_size: {BATCH_SIZE}\n",
            encoding="utf-8",
        )
        environment = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_PUSHGATEWAY_URL"}
        environment.update(DAGSTER_HOME=str(dagster_home), S3_PREFIX=store.prefix, DWH_SCHEMA=dwh.db_schema)
        self.dagster_home = dagster_home
        self.log_path = dagster_home / f"{name}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        command = [DAGSTER, "asset", "materialize", "-m", "amplitude_pipeline"]
        command += ["--select", TABLES_SELECTION, "--partition", WEEK, "-c", str(config)]
        self.process = subprocess.Popen(
            command,
            env=environment,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def wait_for_committed_batches(
        self, dwh: DWHRepository, key: str, batches: int, timeout: float = 120
    ) -> FileCheckpoint:
        """``key``'s checkpoint once this run has committed ``batches`` batches of it; fails at once
        if the run ends before."""

        def probe() -> FileCheckpoint | None:
            checkpoint = dwh.get_checkpoint(key)
            if checkpoint is not None and checkpoint.last_successful_line >= batches * BATCH_SIZE - 1:
                return checkpoint
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the run ended (exit code {self.process.returncode}) before it committed {batches} "
                    f"batches:\n{self.output[-5000:]}"
                )
            return None

        return wait_for(f"{batches} committed batches of {key}", probe, timeout)

    def kill(self) -> None:
        """SIGKILL to the run's every process."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    @property
    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()

    def latest_materialization_metadata(self, asset: str) -> dict[str, Any]:
        """The metadata of ``asset``'s latest materialization in this instance."""
        with DagsterInstance.from_config(str(self.dagster_home)) as instance:
            entry = instance.get_latest_materialization_event(AssetKey(asset))
            assert entry is not None and entry.asset_materialization is not None, (
                f"{asset} never materialized"
            )
            metadata = entry.asset_materialization.metadata
        return {name: getattr(value, "value", value) for name, value in metadata.items()}
