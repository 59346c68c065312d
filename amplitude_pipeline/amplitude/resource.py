"""The Export API as a Dagster resource: configuration and secrets in, a client out."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from amplitude_pipeline.amplitude.client import DEFAULT_EXPORT_URL, AmplitudeExportClient
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import DEFAULT_RETRY, RetrySettings


class AmplitudeExportResource(ConfigurableResource):
    """Credentials come from ``EnvVar``s (wired in ``defs/resources.py``), so Dagster shows only
    their names. The retry fields default to the pipeline's one set of retry defaults
    (``amplitude_pipeline.retries.DEFAULT_RETRY``)."""

    api_key: str = Field(description="Amplitude project API key (AMPLITUDE_API_KEY).")
    secret_key: str = Field(description="Amplitude project secret key (AMPLITUDE_SECRET_KEY).")
    export_url: str = Field(
        default=DEFAULT_EXPORT_URL,
        description="Full URL of the export endpoint; EU: https://analytics.eu.amplitude.com/api/2/export",
    )
    max_attempts: int = Field(
        default=DEFAULT_RETRY.attempts,
        description=(
            "Attempts per request window, the first included, before a transient fault (429, 5xx, "
            "timeout, reset, a 200 that is not a zip) fails the run."
        ),
    )
    backoff_base_seconds: float = Field(
        default=DEFAULT_RETRY.base_seconds,
        description=(
            "Full-jitter backoff: the wait after failed attempt n is drawn from "
            "[0, min(backoff_max_seconds, backoff_base_seconds * 2^(n-1))]."
        ),
    )
    backoff_max_seconds: float = Field(
        default=DEFAULT_RETRY.max_seconds, description="Cap of the backoff's upper bound."
    )
    max_server_wait_seconds: float = Field(
        default=DEFAULT_RETRY.max_server_wait_seconds,
        description=(
            "A Retry-After is a floor for the wait, up to this; a longer one is cut to this, with a warning."
        ),
    )
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = Field(
        default=600.0, description="Longest silence while reading a response before it is retried."
    )

    def get_client(self, log: Log | None = None, tmp_dir: str | Path | None = None) -> AmplitudeExportClient:
        return AmplitudeExportClient(
            self.export_url,
            self.api_key,
            self.secret_key,
            retry=RetrySettings(
                attempts=self.max_attempts,
                base_seconds=self.backoff_base_seconds,
                max_seconds=self.backoff_max_seconds,
                max_server_wait_seconds=self.max_server_wait_seconds,
            ),
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            log=log,
            tmp_dir=tmp_dir,
        )
