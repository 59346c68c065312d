"""``field_mappings.yaml``: the mapping every transform and the DWH's tables follow, read once per content."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from amplitude_pipeline.transform.mapping import FieldMappings, parse_mapping_text


def load_field_mappings_once(path: str | Path) -> FieldMappings:
    """:func:`~amplitude_pipeline.transform.mapping.load_field_mappings`, parsed once per content.

    The code location validates the file when it loads, and a run reads it again in its own
    process: everything that reads the same content shares one parsed mapping.
    """
    return _parsed(str(path), Path(path).read_bytes())


@lru_cache(maxsize=8)
def _parsed(path: str, content: bytes) -> FieldMappings:
    return parse_mapping_text(content, path)
