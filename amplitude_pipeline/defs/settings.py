"""Environment variables of CONTRACT §2 that shape the definitions themselves.

Secrets are not read here: resources take them through ``EnvVar`` at run time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from amplitude_pipeline.amplitude.client import DEFAULT_EXPORT_URL
from amplitude_pipeline.load.s3_discovery import DiscoveryLimits, normalize_prefixes
from amplitude_pipeline.storage.s3 import DEFAULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_START_DATE = "2024-01-01"


@dataclass(frozen=True)
class Settings:
    start_date: date
    export_url: str
    s3_bucket: str | None
    s3_prefix: str
    s3_watch_prefixes: tuple[str, ...]
    s3_watch_limits: DiscoveryLimits
    s3_endpoint_url: str | None
    aws_region: str | None
    dwh_schema: str
    field_mappings_path: Path
    push_metrics: bool
    """PROMETHEUS_PUSHGATEWAY_URL is set; the URL itself (it may hold a password) goes through EnvVar."""

    @classmethod
    def from_env(cls) -> Settings:
        raw_start = os.environ.get("AMPLITUDE_START_DATE") or DEFAULT_START_DATE
        try:
            start = date.fromisoformat(raw_start)
        except ValueError as error:
            raise ValueError(f"AMPLITUDE_START_DATE={raw_start!r} is not a YYYY-MM-DD date") from error
        if start.weekday() != 0:
            raise ValueError(
                f"AMPLITUDE_START_DATE={raw_start} is a {start:%A}; weekly partitions start on a Monday"
            )
        return cls(
            start_date=start,
            export_url=os.environ.get("AMPLITUDE_EXPORT_URL") or DEFAULT_EXPORT_URL,
            s3_bucket=os.environ.get("S3_BUCKET") or None,
            s3_prefix=os.environ.get("S3_PREFIX") or DEFAULT_PREFIX,
            s3_watch_prefixes=_watched_prefixes(),
            s3_watch_limits=_s3_watch_limits(),
            s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
            aws_region=os.environ.get("AWS_REGION") or None,
            dwh_schema=os.environ.get("DWH_SCHEMA") or "public",
            field_mappings_path=Path(
                os.environ.get("FIELD_MAPPINGS_PATH") or REPO_ROOT / "field_mappings.yaml"
            ),
            push_metrics=bool(os.environ.get("PROMETHEUS_PUSHGATEWAY_URL")),
        )


def _watched_prefixes() -> tuple[str, ...]:
    raw = os.environ.get("S3_WATCH_PREFIXES") or os.environ.get("S3_PREFIX") or DEFAULT_PREFIX
    prefixes = normalize_prefixes(raw.split(","))
    if not prefixes:
        raise ValueError(f"S3_WATCH_PREFIXES={raw!r} names no prefix ('/' is the whole bucket)")
    return prefixes


def _s3_watch_limits() -> DiscoveryLimits:
    """The bounds of s3_new_objects_sensor's ticks and runs (README: "s3_new_objects_sensor")."""
    defaults = DiscoveryLimits()
    return DiscoveryLimits(
        max_pages_per_tick=_positive_int("S3_WATCH_MAX_PAGES_PER_TICK", defaults.max_pages_per_tick),
        max_files_per_tick=_positive_int("S3_WATCH_MAX_FILES_PER_TICK", defaults.max_files_per_tick),
        max_files_per_run=_positive_int("S3_WATCH_MAX_FILES_PER_RUN", defaults.max_files_per_run),
        max_bytes_per_run=_positive_int("S3_WATCH_MAX_MB_PER_RUN", defaults.max_bytes_per_run >> 20) << 20,
        upload_margin=timedelta(
            minutes=_positive_int(
                "S3_WATCH_UPLOAD_MARGIN_MINUTES", int(defaults.upload_margin.total_seconds()) // 60
            )
        ),
    )


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}={raw!r} is not a positive whole number")
    return value


SETTINGS = Settings.from_env()
