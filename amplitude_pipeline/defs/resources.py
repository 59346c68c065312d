"""The code location's resources: Dagster wrappers around the plain classes, built from the
environment (CONTRACT §2), secrets only through ``EnvVar``.

Each wrapper is configuration in (shown in the UI, secrets by their variable's name only) and a
plain object out (``create_resource``): assets, jobs and sensors declare
``ResourceParam[DWHRepository]``, ``ResourceParam[RawEventStore]`` and
``ResourceParam[FieldMappings]``, and a test may hand them the plain objects directly.
"""

from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar, InitResourceContext, ResourceDependency
from pydantic import Field, PrivateAttr

from amplitude_pipeline.amplitude.client import (
    CONNECT_TIMEOUT_SECONDS,
    DEFAULT_EXPORT_URL,
    READ_TIMEOUT_SECONDS,
    AmplitudeExportClient,
)
from amplitude_pipeline.defs.settings import Settings
from amplitude_pipeline.load.metrics import (
    DEFAULT_KEEP_SETTLED_DAYS,
    DEFAULT_PUSH_TIMEOUT_SECONDS,
    LoadMetrics,
    push_load_metrics,
)
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import DEFAULT_RETRY, RetrySettings
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline.storage.s3 import DEFAULT_PREFIX, RawEventStore, s3_client
from amplitude_pipeline.transform.mapping import FieldMappings


class FieldMappingsResource(ConfigurableResource):
    """``field_mappings.yaml`` (``FIELD_MAPPINGS_PATH``), read and validated once per content."""

    path: str = Field(description="Path of field_mappings.yaml (FIELD_MAPPINGS_PATH).")

    def create_resource(self, context: InitResourceContext) -> FieldMappings:
        return load_field_mappings_once(self.path)


class DWHResource(ConfigurableResource):
    """The DWH (``DWH_URL``, ``DWH_SCHEMA``): a :class:`DWHRepository` per run, whose
    connections are closed when the run ends."""

    url: str = Field(description="SQLAlchemy URL of the DWH: postgresql+psycopg://user:password@host/db")
    db_schema: str = Field(default="public", description="Schema holding the tables (DWH_SCHEMA).")
    field_mappings: ResourceDependency[FieldMappings]
    _created: list[DWHRepository] = PrivateAttr(default_factory=list)

    def create_resource(self, context: InitResourceContext) -> DWHRepository:
        repository = DWHRepository(self.url, self.db_schema, mappings=self.field_mappings)
        self._created.append(repository)
        return repository

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        while self._created:
            self._created.pop().dispose()


class RawEventStoreResource(ConfigurableResource):
    """The bucket and prefix of the weekly exports (``S3_BUCKET``, ``S3_PREFIX``), reached with
    boto3's own credential chain and botocore's standard retries."""

    bucket: str = Field(description="S3_BUCKET")
    prefix: str = Field(default=DEFAULT_PREFIX, description="S3_PREFIX: the weekly objects' 'directory'.")
    endpoint_url: str | None = Field(default=None, description="S3_ENDPOINT_URL; unset: AWS.")
    region_name: str | None = Field(default=None, description="AWS_REGION")
    max_attempts: int = Field(
        default=DEFAULT_RETRY.attempts, ge=1, description="Attempts per S3 request, the first included."
    )

    def create_resource(self, context: InitResourceContext) -> RawEventStore:
        client = s3_client(self.endpoint_url, self.region_name, self.max_attempts)
        return RawEventStore(self.bucket, self.prefix, client)


class AmplitudeExportResource(ConfigurableResource):
    """The Export API: credentials from ``EnvVar``s (Dagster shows only their names), retries with
    the pipeline's one set of defaults (``amplitude_pipeline.retries.DEFAULT_RETRY``); hands out
    plain :class:`AmplitudeExportClient`\\ s."""

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
    connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: float = Field(
        default=READ_TIMEOUT_SECONDS,
        description="Longest silence while reading a response before it is retried.",
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


class MetricsPusher(ConfigurableResource):
    """Pushes load metrics to a Prometheus Pushgateway (CONTRACT §8); without a URL it pushes nothing."""

    pushgateway_url: str | None = Field(
        default=None, description="PROMETHEUS_PUSHGATEWAY_URL, e.g. http://host:9091; unset: no push."
    )
    timeout_seconds: float = Field(
        default=DEFAULT_PUSH_TIMEOUT_SECONDS, gt=0, description="Per push; a slow gateway only delays a run."
    )
    keep_settled_days: int = Field(
        default=DEFAULT_KEEP_SETTLED_DAYS,
        ge=1,
        description="S3 groups last pushed more than this many days ago with nothing stuck are deleted from "
        "the Pushgateway after a push (Prometheus keeps their history); stuck groups are never deleted.",
    )

    def push(self, metrics: LoadMetrics, log: Log) -> bool:
        """True when the Pushgateway accepted them; a failure is logged, never raised."""
        if not self.pushgateway_url:
            return False
        return push_load_metrics(
            metrics,
            self.pushgateway_url,
            log,
            timeout_seconds=self.timeout_seconds,
            keep_settled_days=self.keep_settled_days,
        )


def build_resources(settings: Settings) -> dict[str, Any]:
    """The five resources of the code location, from the environment."""
    field_mappings = FieldMappingsResource(path=str(settings.field_mappings_path))
    return {
        "amplitude": AmplitudeExportResource(
            api_key=EnvVar("AMPLITUDE_API_KEY"),
            secret_key=EnvVar("AMPLITUDE_SECRET_KEY"),
            export_url=settings.export_url,
        ),
        # No keys passed: boto3's own chain reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a role).
        "raw_event_store": RawEventStoreResource(
            bucket=EnvVar("S3_BUCKET"),
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.aws_region,
        ),
        "field_mappings": field_mappings,
        "dwh": DWHResource(
            url=EnvVar("DWH_URL"), db_schema=settings.dwh_schema, field_mappings=field_mappings
        ),
        "metrics_pusher": MetricsPusher(
            pushgateway_url=EnvVar("PROMETHEUS_PUSHGATEWAY_URL") if settings.push_metrics else None
        ),
    }
