"""Resources built from the environment (CONTRACT §2); secrets only through EnvVar."""

from typing import Any

from dagster import EnvVar
from dagster_aws.s3 import S3Resource

from amplitude_pipeline.amplitude.resource import AmplitudeExportResource
from amplitude_pipeline.defs.metrics import MetricsPusher
from amplitude_pipeline.retries import DEFAULT_RETRY
from amplitude_pipeline.settings import Settings
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.field_mappings import FieldMappingsFile
from amplitude_pipeline.storage.s3 import RawEventStore


def build_resources(settings: Settings) -> dict[str, Any]:
    # No keys passed: boto3's own chain reads AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or a role).
    # S3Resource's clients use botocore's "standard" retry mode (5xx, SlowDown and other throttling,
    # timeouts, resets; full-jitter backoff). Its max_attempts is botocore's retries *after* the
    # first call (botocore adds one), whatever its description says: DEFAULT_RETRY.attempts in all.
    s3 = S3Resource(
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        max_attempts=DEFAULT_RETRY.attempts - 1,
    )
    field_mappings = FieldMappingsFile(path=str(settings.field_mappings_path))
    return {
        "amplitude": AmplitudeExportResource(
            api_key=EnvVar("AMPLITUDE_API_KEY"),
            secret_key=EnvVar("AMPLITUDE_SECRET_KEY"),
            export_url=settings.export_url,
        ),
        "raw_event_store": RawEventStore(bucket=EnvVar("S3_BUCKET"), prefix=settings.s3_prefix, s3=s3),
        "field_mappings": field_mappings,
        "dwh": DWHRepository(
            url=EnvVar("DWH_URL"), db_schema=settings.dwh_schema, field_mappings=field_mappings
        ),
        "metrics_pusher": MetricsPusher(
            pushgateway_url=EnvVar("PROMETHEUS_PUSHGATEWAY_URL") if settings.push_metrics else None
        ),
    }
