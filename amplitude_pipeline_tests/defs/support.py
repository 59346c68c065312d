"""Helpers for running the code location's assets and jobs in process against the local stack."""

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster import ExecuteInProcessResult

from amplitude_pipeline.defs.resources import AmplitudeExportResource, MetricsPusher
from amplitude_pipeline.storage.s3 import RawEventStore
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS
from amplitude_simulator import SimulatorConfig, SimulatorServer

WEEK = "2024-01-08"
SIM_API_KEY = "sim-api-key"
SIM_SECRET_KEY = "sim-secret-key"
# Small enough for a week to export in well under a second, big enough for multi-part hours.
SMALL_WEEK = SimulatorConfig(users=20, events_per_day=40)
# The metrics resource for runs that test something else: no Pushgateway, nothing pushed.
NO_METRICS = MetricsPusher()


def amplitude_resource(sim: SimulatorServer, **overrides: Any) -> AmplitudeExportResource:
    settings: dict[str, Any] = {
        "api_key": SIM_API_KEY,
        "secret_key": SIM_SECRET_KEY,
        "export_url": sim.export_url,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        **overrides,
    }
    return AmplitudeExportResource(**settings)


def unused_amplitude_resource() -> AmplitudeExportResource:
    """For runs that select no export step but whose asset graph still needs the resource."""
    return AmplitudeExportResource(
        api_key="unused", secret_key="unused", export_url="http://127.0.0.1:9/api/2/export"
    )


@contextmanager
def simulator(config: SimulatorConfig) -> Iterator[SimulatorServer]:
    with SimulatorServer(config=config, api_key=SIM_API_KEY, secret_key=SIM_SECRET_KEY) as sim:
        yield sim


def object_bytes(store: RawEventStore, key: str) -> bytes:
    """The stored (compressed) bytes of an object."""
    response = store.client.get_object(Bucket=store.bucket, Key=key)
    return response["Body"].read()


def object_lines_bytes(store: RawEventStore, key: str) -> bytes:
    """The decompressed content of a gzip object (all members)."""
    return gzip.decompress(object_bytes(store, key))


def joined_lines(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def values(metadata: dict[str, Any]) -> dict[str, Any]:
    """Raw values of a metadata dict (MetadataValue objects unwrapped)."""
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def materializations(result: ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Metadata values of the run's materializations, by asset key (one per asset expected)."""
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        name = materialization.asset_key.to_user_string()
        assert name not in found, f"{name} materialized twice"
        found[name] = values(dict(materialization.metadata))
    return found


def failure_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's only step failure (a ``dagster.Failure``)."""
    failures = result.get_step_failure_events()
    assert len(failures) == 1, [event.message for event in failures]
    user_failure = failures[0].step_failure_data.user_failure_data
    assert user_failure is not None, failures[0].step_failure_data.error
    return values(dict(user_failure.metadata))


def mappings_without(path: Path, *column_lines: str) -> Path:
    """A copy of field_mappings.yaml without the given column lines (their keys become unknown)."""
    text = DEFAULT_MAPPINGS.read_text(encoding="utf-8")
    for line in column_lines:
        assert f"\n{line}\n" in text, line
        text = text.replace(f"\n{line}\n", "\n", 1)
    path.write_text(text, encoding="utf-8")
    return path
