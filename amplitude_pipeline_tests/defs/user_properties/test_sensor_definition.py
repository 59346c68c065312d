"""``s3_new_objects_sensor`` as the code location defines it, and its settings (no stack needed)."""

from datetime import timedelta

import pytest
from dagster import DefaultSensorStatus

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline.defs.settings import SETTINGS, Settings
from amplitude_pipeline.load.s3_discovery import DiscoveryLimits

defs = load_code_location()


def test_the_sensor_and_its_job_are_registered_and_the_sensor_ships_stopped():
    sensor = defs.resolve_sensor_def("s3_new_objects_sensor")

    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert sensor.job_name == "load_s3_event_files"
    assert defs.resolve_job_def("load_s3_event_files").graph.node_names() == ["load_s3_event_files"]
    assert all(prefix in (sensor.description or "") for prefix in SETTINGS.s3_watch_prefixes)


def test_the_watched_prefixes_default_to_s3_prefix(monkeypatch):
    monkeypatch.delenv("S3_WATCH_PREFIXES", raising=False)
    monkeypatch.setenv("S3_PREFIX", "raw/amplitude")
    assert Settings.from_env().s3_watch_prefixes == ("raw/amplitude/",)

    monkeypatch.setenv("S3_WATCH_PREFIXES", "raw/amplitude, amplitude-s3-export/187512/ ,raw/amplitude/old")
    assert Settings.from_env().s3_watch_prefixes == ("amplitude-s3-export/187512/", "raw/amplitude/")

    monkeypatch.setenv("S3_WATCH_PREFIXES", " , ")
    with pytest.raises(ValueError, match="S3_WATCH_PREFIXES"):
        Settings.from_env()


def test_the_bounds_come_from_the_environment_with_defaults(monkeypatch):
    for name in (
        "S3_WATCH_MAX_PAGES_PER_TICK",
        "S3_WATCH_MAX_FILES_PER_TICK",
        "S3_WATCH_MAX_FILES_PER_RUN",
        "S3_WATCH_MAX_MB_PER_RUN",
        "S3_WATCH_UPLOAD_MARGIN_MINUTES",
    ):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env().s3_watch_limits == DiscoveryLimits()

    monkeypatch.setenv("S3_WATCH_MAX_PAGES_PER_TICK", "5")
    monkeypatch.setenv("S3_WATCH_MAX_MB_PER_RUN", "512")
    monkeypatch.setenv("S3_WATCH_UPLOAD_MARGIN_MINUTES", "180")
    limits = Settings.from_env().s3_watch_limits
    assert (limits.max_pages_per_tick, limits.max_bytes_per_run, limits.upload_margin) == (
        5,
        512 * 1024 * 1024,
        timedelta(hours=3),
    )

    monkeypatch.setenv("S3_WATCH_MAX_FILES_PER_RUN", "0")
    with pytest.raises(ValueError, match="S3_WATCH_MAX_FILES_PER_RUN"):
        Settings.from_env()
