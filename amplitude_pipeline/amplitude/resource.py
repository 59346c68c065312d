"""The Export API as a Dagster resource: configuration and secrets in, a client out."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from amplitude_pipeline.amplitude.client import (
    DEFAULT_EXPORT_URL,
    AmplitudeExportClient,
    RetryPolicy,
)
from amplitude_pipeline.log import Log


class AmplitudeExportResource(ConfigurableResource):
    """Credentials come from ``EnvVar``s (see definitions.py), so Dagster shows only their names."""

    api_key: str = Field(description="Amplitude project API key (AMPLITUDE_API_KEY).")
    secret_key: str = Field(description="Amplitude project secret key (AMPLITUDE_SECRET_KEY).")
    export_url: str = Field(
        default=DEFAULT_EXPORT_URL,
        description="Full URL of the export endpoint; EU: https://analytics.eu.amplitude.com/api/2/export",
    )
    max_attempts: int = Field(default=6, description="Attempts per request window before the run fails.")
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 120.0
    connect_timeout_seconds: float = 30.0
    read_timeout_seconds: float = Field(
        default=600.0, description="Longest silence while reading a response before it is retried."
    )

    def get_client(self, log: Log | None = None, tmp_dir: str | Path | None = None) -> AmplitudeExportClient:
        return AmplitudeExportClient(
            self.export_url,
            self.api_key,
            self.secret_key,
            retry=RetryPolicy(
                max_attempts=self.max_attempts,
                base_delay_seconds=self.backoff_base_seconds,
                max_delay_seconds=self.backoff_max_seconds,
            ),
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            log=log,
            tmp_dir=tmp_dir,
        )
