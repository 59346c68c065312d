"""Rows for ``tmp_user_properties`` from the simulated population (demo and tests).

The other systems that fill this table see the same users as Amplitude: each row is a user's
``user_properties`` snapshot at some instant, so tmp rows and exported events interleave.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from amplitude_simulator.data import SimulatorConfig, population


def tmp_rows(config: SimulatorConfig, count: int, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """``count`` deterministic rows with event times spread over [start, end)."""
    users = population(config)
    rng = random.Random(f"{config.seed}:tmp_user_properties:{start.isoformat()}:{count}")
    span_ms = int((end - start) / timedelta(milliseconds=1))
    for _ in range(count):
        user = users[rng.randrange(len(users))]
        event_time = start + timedelta(milliseconds=rng.randrange(span_ms))
        yield {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "amplitude_id": user.amplitude_id,
            "user_properties": user.properties_at(event_time),
            "event_time": event_time,
        }
