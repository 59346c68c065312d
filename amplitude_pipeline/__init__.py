"""Amplitude → S3 → PostgreSQL user-properties pipeline, as a Dagster code location.

`dagster ... -m amplitude_pipeline` finds `defs` here.
"""

from amplitude_pipeline.definitions import defs

__all__ = ["defs"]
