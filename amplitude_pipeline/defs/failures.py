"""How a stopped load ends its step: a failure that needs a person, or a retry that does not.

A load stopped by bad data fails the run at once, with CONTRACT §7's metadata, and is never
retried (running it again cannot help). A load stopped because the DWH or S3 stayed away
longer than the in-process retries waited is run again by Dagster a few minutes later, and
resumes after its checkpoint; after the last retry it fails like the other. Only these known
causes are retried: an unexpected error (a bug, a configuration mistake) fails at once.
"""

from collections.abc import Mapping
from typing import Any

from dagster import AssetExecutionContext, Failure, OpExecutionContext, RetryRequested

from amplitude_pipeline.load.totals import LoadStoppedError

DWH_LOAD_STEP_RETRIES = 3
DWH_LOAD_FIRST_RETRY_SECONDS = 60


def stopped_load(
    context: OpExecutionContext | AssetExecutionContext,
    error: LoadStoppedError,
    metadata: Mapping[str, Any] | None = None,
) -> Failure | RetryRequested:
    """What to raise for ``error``: a retry 1, 2, then 4 minutes later when it may pass, else the
    run's failure with the load's metadata (plus ``metadata``)."""
    if error.retryable and context.retry_number < DWH_LOAD_STEP_RETRIES:
        wait = DWH_LOAD_FIRST_RETRY_SECONDS * 2**context.retry_number
        context.log.warning(f"{error}; the step runs again in {wait} s and resumes where it stopped")
        return RetryRequested(max_retries=DWH_LOAD_STEP_RETRIES, seconds_to_wait=wait)
    return Failure(
        description=str(error), metadata={**error.metadata, **(metadata or {})}, allow_retries=False
    )
