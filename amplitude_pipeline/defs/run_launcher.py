"""The production instance's run launcher: Dagster's default one, whose runs run monitoring can
check, so that a run that died with its code server frees its place and its DWH-load slot.

``DefaultRunLauncher`` starts each run as a subprocess of a code server. When the run's process
dies alone, the code server reports the run failed at once. When it dies *with* its code server
(a machine or container gone, the server killed), nobody reports anything: the run stays STARTED,
holding its DWH-load slot, until run monitoring's ``max_runtime_seconds`` (a day). This launcher
answers run monitoring's health check by asking the code server that started the run (its
address is in the run's tags) whether it is still executing it:

- the server answers and still has the run: RUNNING;
- the server answers without it (a code server started again in the old one's place): FAILED;
- the server does not answer: RUNNING for ``unreachable_grace_seconds`` (a code server being
  redeployed, a network blip), then FAILED.

A run marked failed is retried by the instance's ``run_retries`` (deploy/dagster.yaml); a table
load resumes after its checkpoint, and its file lock makes a worker that somehow survived its
code server and the retry take turns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRun, Field, IntSource
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import ConfigurableClassData, deserialize_value

DEFAULT_UNREACHABLE_GRACE_SECONDS = 300
_HEALTH_CHECK_TIMEOUT_SECONDS = 10


class CodeServerHealthRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus a run-worker health check through the run's code server."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        unreachable_grace_seconds: int = DEFAULT_UNREACHABLE_GRACE_SECONDS,
    ) -> None:
        super().__init__(inst_data=inst_data)
        self.unreachable_grace_seconds = unreachable_grace_seconds
        self._unreachable_since: dict[str, float] = {}

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "unreachable_grace_seconds": Field(
                IntSource,
                is_required=False,
                default_value=DEFAULT_UNREACHABLE_GRACE_SECONDS,
                description="How long a run's code server may not answer before the run counts as dead.",
            )
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> CodeServerHealthRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no code server recorded")
        try:
            reply = client.can_cancel_execution(
                CanCancelExecutionRequest(run_id=run.run_id), timeout=_HEALTH_CHECK_TIMEOUT_SECONDS
            )
        except DagsterUserCodeUnreachableError:
            first = self._unreachable_since.setdefault(run.run_id, time.monotonic())
            waited = time.monotonic() - first
            if waited < self.unreachable_grace_seconds:
                return CheckRunHealthResult(
                    WorkerStatus.RUNNING,
                    f"its code server has not answered for {waited:.0f} s",
                    transient=True,
                )
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"its code server has not answered for {waited:.0f} s: the run died with it",
            )
        self._unreachable_since.pop(run.run_id, None)
        if deserialize_value(reply, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            "its code server answers but is not running it: the run died with an earlier code server",
        )
