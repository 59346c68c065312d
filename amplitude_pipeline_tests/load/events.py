"""Small hand-made Amplitude events and files for loader tests."""

import gzip
import uuid
from typing import Any

import orjson

from amplitude_pipeline.storage.s3 import RawEventStore

BASE_PROPERTIES: dict[str, Any] = {
    "gender": "ж",
    "birth_date": "1990-05-17",
    "city": "Москва",
    "age": "34 years",
    "premium": False,
}


def event(
    event_time: str,
    *,
    ehr_id: str | None = None,
    amplitude_id: int | None = 1,
    event_uuid: str | None = None,
    **properties: Any,
) -> dict[str, Any]:
    user_properties = {**BASE_PROPERTIES, **properties}
    if ehr_id is not None:
        user_properties["ehr_id"] = ehr_id
    return {
        "uuid": event_uuid or str(uuid.uuid4()),
        "event_time": event_time,
        "event_type": "screen_view",
        "amplitude_id": amplitude_id,
        "user_properties": user_properties,
    }


def upload_events(store: RawEventStore, name: str, events: list[dict[str, Any]]) -> str:
    key = f"{store.prefix}/{name}"
    body = gzip.compress(b"".join(orjson.dumps(item) + b"\n" for item in events))
    store.client.put_object(Bucket=store.bucket, Key=key, Body=body)
    return key
