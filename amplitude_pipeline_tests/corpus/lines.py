"""The corpus's ordinary event line, for the cases that are generated rather than written out.

``event_line(3)`` is byte for byte the line 3 of the hand-written cases: user ``E3``, uuid
``…-000000000003``, ``event_time`` ``2024-01-08 10:00:03``, ``amplitude_id`` 103.
"""

from typing import Any

import orjson


def event_line(index: int, **user_properties: Any) -> bytes:
    """Line ``index`` of a case: an ordinary event, its ``user_properties`` changed by the keywords
    (a keyword whose value is :data:`DROP` removes that key)."""
    properties = {"ehr_id": f"E{index}", "gender": "ж", "city": "Казань", "age": f"3{index} years"}
    properties.update(user_properties)
    return orjson.dumps(
        {
            "uuid": f"00000000-0000-4000-8000-{index:012d}",
            "event_time": f"2024-01-08 10:00:{index:02d}",
            "amplitude_id": 100 + index,
            "user_properties": {key: value for key, value in properties.items() if value is not DROP},
        }
    )


DROP: Any = object()
