"""Constants and helpers shared across the test packages: the repository's paths, the local
stack's S3 and DWH as the plain classes, and the code location's resources for in-process runs."""

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline.storage.s3 import RawEventStore, s3_client

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MAPPINGS = REPO_ROOT / "field_mappings.yaml"
NewDWH = Callable[..., DWHRepository]
"""The ``new_dwh`` fixture: ``new_dwh(mappings=DEFAULT_MAPPINGS, *, schema=None, create=True)``."""
STACK_VARIABLES = ("S3_ENDPOINT_URL", "S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DWH_URL")


@dataclass
class RecordingLog:
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def info(self, msg: str, /) -> None:
        self.infos.append(msg)

    def warning(self, msg: str, /) -> None:
        self.warnings.append(msg)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stack_s3_client() -> Any:
    """A boto3 client of the local stack's S3 (scripts/stack.sh env)."""
    return s3_client(os.environ["S3_ENDPOINT_URL"], os.environ.get("AWS_REGION"))


def stack_store(prefix: str | None = None, client: Any = None) -> RawEventStore:
    """The stack's bucket under ``prefix`` (a fresh one when None)."""
    return RawEventStore(
        os.environ["S3_BUCKET"], prefix or f"test-{uuid.uuid4().hex[:12]}/events", client or stack_s3_client()
    )


def stack_dwh(schema: str, mappings: Path = DEFAULT_MAPPINGS, url: str | None = None) -> DWHRepository:
    """The stack's DWH, tables in ``schema`` built from ``mappings`` (not created: see ``ensure_schema``)."""
    return DWHRepository(url or os.environ["DWH_URL"], schema, mappings=load_field_mappings_once(mappings))


def pipeline_resources(
    *, store: RawEventStore | None = None, dwh: DWHRepository | None = None, **others: Any
) -> dict[str, Any]:
    """The code location's resources for an in-process run: the plain store and DWH as they are
    (and the DWH's mapping as ``field_mappings``), no Pushgateway, the Export API unused unless
    ``amplitude`` is given; ``others`` override or add."""
    from amplitude_pipeline.defs.resources import AmplitudeExportResource, MetricsPusher

    resources: dict[str, Any] = {
        "metrics_pusher": MetricsPusher(),
        "amplitude": AmplitudeExportResource(
            api_key="unused", secret_key="unused", export_url="http://127.0.0.1:9/api/2/export"
        ),
    }
    if store is not None:
        resources["raw_event_store"] = store
    if dwh is not None:
        resources["dwh"] = dwh
        resources["field_mappings"] = dwh.mappings
    return {**resources, **others}
