"""``RawEventStore.list_pages`` against SeaweedFS: lexical order, pages, ``StartAfter``."""

from datetime import UTC, datetime, timedelta

import pytest

from amplitude_pipeline.storage.s3 import RawEventStore

pytestmark = pytest.mark.integration

# "Directory" objects (sub/, sub/d/) with keys under them: SeaweedFS wrongly ends a listing when a
# full page ends on one of them.
NAMES = [
    "187512/187512_2024-01-08_5#0.json.gz",
    "_SUCCESS",
    "a.json.gz",
    "sub/",
    "sub/c.jsonl.gz",
    "sub/d/",
    "sub/d/e.json.gz",
]


@pytest.fixture
def listed_prefix(raw_event_store: RawEventStore) -> str:
    client = raw_event_store.client
    prefix = f"{raw_event_store.prefix}/"
    for name in NAMES:
        client.put_object(
            Bucket=raw_event_store.bucket, Key=prefix + name, Body=b"" if name.endswith("/") else b"x"
        )
    # A neighbour that shares the prefix's text but not its directory.
    client.put_object(Bucket=raw_event_store.bucket, Key=f"{raw_event_store.prefix}2/a.json.gz", Body=b"x")
    return prefix


@pytest.mark.parametrize("page_size", range(1, len(NAMES) + 2))
def test_every_key_under_the_prefix_comes_once_in_lexical_order_whatever_the_page_size(
    raw_event_store, listed_prefix, page_size
):
    pages = list(raw_event_store.list_pages(listed_prefix, page_size=page_size))

    keys = [obj.key for page in pages for obj in page.objects]
    assert keys == [listed_prefix + name for name in NAMES]
    assert all(len(page.objects) <= page_size for page in pages)
    assert [page.is_last for page in pages] == [False] * (len(pages) - 1) + [True]


def test_start_after_resumes_after_a_key_that_need_not_exist(raw_event_store, listed_prefix):
    def after(key: str) -> list[str]:
        pages = raw_event_store.list_pages(listed_prefix, start_after=listed_prefix + key, page_size=2)
        return [obj.key.removeprefix(listed_prefix) for page in pages for obj in page.objects]

    assert after("a.json.gz") == NAMES[3:]
    assert after("b") == NAMES[3:]
    assert after("sub/") == NAMES[4:]
    assert after("zzz") == []


def test_a_listed_object_carries_what_the_sensor_compares(raw_event_store, listed_prefix):
    key = listed_prefix + "a.json.gz"
    (listed,) = [
        obj for page in raw_event_store.list_pages(listed_prefix) for obj in page.objects if obj.key == key
    ]
    stored = raw_event_store.stat(key)

    assert stored is not None
    assert (listed.etag, listed.size) == (stored.etag, stored.size) == (stored.etag, 1)
    assert listed.last_modified.tzinfo is UTC
    assert abs(datetime.now(UTC) - listed.last_modified) < timedelta(minutes=5)
