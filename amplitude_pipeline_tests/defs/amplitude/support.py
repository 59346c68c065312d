"""Helpers for tests of the Amplitude assets: what a run's events say about its retries and failure."""

from dagster import ExecuteInProcessResult


def step_retries(result: ExecuteInProcessResult) -> int:
    return sum(event.is_step_up_for_retry for event in result.all_events)


def final_error_text(result: ExecuteInProcessResult) -> str:
    """The step failure's message and every cause's: a retried step's failure wraps the last
    attempt's error as its cause."""
    error = result.get_step_failure_events()[0].step_failure_data.error
    texts = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)
