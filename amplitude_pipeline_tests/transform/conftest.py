from __future__ import annotations

import pytest

from amplitude_pipeline.transform.mapping import FieldMappings, parse_field_mappings
from amplitude_pipeline_tests.transform.support import SMALL_MAPPING


@pytest.fixture
def mappings() -> FieldMappings:
    return parse_field_mappings(SMALL_MAPPING)
