"""The small mapping and the event builder the transform tests share."""

from __future__ import annotations

from typing import Any

SMALL_MAPPING: dict[str, Any] = {
    "identity": {"ehr_id": "ehr_id"},
    "ignore": ["initial_gclid", "utm_source"],
    "permanent": {
        "gender": {"value_map": {"м": "male", "ж": "female"}},
        "birth_date": {"type": "date"},
    },
    "changeable": {
        "age": {"type": "int", "regex": r"^\s*(\d+)"},
        "city": {},
        "is_premium": {"source": "premium", "type": "bool"},
        "weight_kg": {"source": "weight", "type": "float"},
    },
}


def make_event(**user_properties: Any) -> dict[str, Any]:
    return {
        "uuid": "0b8f5f0e-9d1c-4c55-9a1e-3f1f2b6a7c01",
        "event_time": "2024-01-08 12:34:56.789012",
        "amplitude_id": 987654321,
        "event_type": "session_start",
        "user_properties": user_properties,
    }
