"""``field_mappings.yaml`` as a resource: the mapping every transform and the DWH's tables follow."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from amplitude_pipeline.transform.mapping import FieldMappings, parse_mapping_text


class FieldMappingsFile(ConfigurableResource):
    """The mapping file (``FIELD_MAPPINGS_PATH``), read and validated once per content.

    The code location validates the file when it loads, and a run's resources read it again in
    the run's process: the parsed mapping is shared by everything that reads the same content.
    """

    path: str = Field(description="Path of field_mappings.yaml (FIELD_MAPPINGS_PATH).")

    @property
    def mappings(self) -> FieldMappings:
        return load_field_mappings_once(self.path)


def load_field_mappings_once(path: str | Path) -> FieldMappings:
    """:func:`~amplitude_pipeline.transform.mapping.load_field_mappings`, parsed once per content."""
    return _parsed(str(path), Path(path).read_bytes())


@lru_cache(maxsize=8)
def _parsed(path: str, content: bytes) -> FieldMappings:
    return parse_mapping_text(content, path)
