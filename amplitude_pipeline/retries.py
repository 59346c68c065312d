"""Retrying transient faults: one mechanism (tenacity) and one set of defaults for every service.

The Export API, the DWH (and, through botocore's own retry mode, S3) are retried with
exponential backoff and full jitter: each wait is drawn from ``[0, min(max, base · 2^n)]``,
so that many workers that failed together do not come back together. A server's own
``Retry-After`` is honoured but capped, and the cap is logged rather than silently obeyed.
Only what the caller's predicate calls transient is retried; data errors never are. Every
wait is logged with the failure it follows; when the attempts run out, the last failure is
raised as it was.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import tenacity

from amplitude_pipeline.log import Log
from amplitude_pipeline.text import shorten

_logger: Final = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrySettings:
    """How long to keep trying. The defaults serve every service of the pipeline."""

    attempts: int = 6
    base_seconds: float = 2.0
    max_seconds: float = 120.0
    max_server_wait_seconds: float = 300.0
    """The longest ``Retry-After`` obeyed; a longer one is cut to this, with a warning."""

    def backoff(self, attempt: int) -> float:
        """Full jitter: a uniform draw below the capped exponential of the attempt (1-based)."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


DEFAULT_RETRY: Final = RetrySettings()


def retrying(
    what: str,
    is_transient: Callable[[BaseException], bool],
    *,
    settings: RetrySettings = DEFAULT_RETRY,
    log: Log | None = None,
    server_wait: Callable[[BaseException], float | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """A ``tenacity.Retrying`` for ``what`` (named in the log lines): use as ``retrying(...)(fn)``
    or ``for attempt in retrying(...): with attempt: ...``.

    ``server_wait`` reads a failure's own requested wait (``Retry-After``), if any.
    Warnings are written in ``before_sleep``, which runs only when a wait follows: tenacity
    computes the wait before it checks the attempts left, so a warning written while computing
    it would announce a wait that the last attempt never makes.
    """
    logger: Log = log or _logger

    def failure(state: tenacity.RetryCallState) -> BaseException | None:
        return state.outcome.exception() if state.outcome is not None else None

    def asked_wait(state: tenacity.RetryCallState) -> float | None:
        error = failure(state)
        return server_wait(error) if server_wait is not None and error is not None else None

    def wait(state: tenacity.RetryCallState) -> float:
        jittered = settings.backoff(state.attempt_number)
        asked = asked_wait(state)
        if asked is None:
            return jittered
        return max(min(asked, settings.max_server_wait_seconds), jittered)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = failure(state)
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        asked = asked_wait(state)
        if asked is not None and asked > settings.max_server_wait_seconds:
            logger.warning(
                f"{what}: the server asked to wait {asked:.0f} s before retrying; waiting "
                f"{settings.max_server_wait_seconds:.0f} s instead (max_server_wait_seconds)"
            )
        logger.warning(
            f"{what}: {shorten(describe_error(error))}; attempt {state.attempt_number} of "
            f"{settings.attempts} failed, retrying in {delay:.1f} s"
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def describe_error(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
