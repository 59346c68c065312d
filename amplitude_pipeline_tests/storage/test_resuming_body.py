"""An S3 body that breaks mid-object is resumed where it broke (issue 9: connections dropped
mid-body during a load); the lines come out whole, in order, once."""

import gzip
import io
import random

import botocore.exceptions
import pytest

from amplitude_pipeline.retries import RetrySettings
from amplitude_pipeline.storage.s3 import (
    ObjectReadError,
    RawEventStore,
    ResumingBody,
    StoredObject,
    iter_gzip_lines,
)

_RANDOM = random.Random(7)
LINES = [f'{{"n": {i}, "pad": "{_RANDOM.randbytes(i % 50).hex()}"}}'.encode() for i in range(20_000)]
CONTENT = gzip.compress(b"".join(line + b"\n" for line in LINES))
NO_WAIT = RetrySettings(attempts=4, base_seconds=0.0, max_seconds=0.0)


class BreakingBody:
    """``data[offset:]``, which breaks (raising or ending early) after ``break_after`` bytes."""

    def __init__(self, data: bytes, offset: int, break_after: int | None, how: str) -> None:
        self._stream = io.BytesIO(data[offset:])
        self._left = break_after
        self._how = how
        self.closed = False

    def read(self, size: int) -> bytes:
        if self._left is not None and self._left <= 0:
            if self._how == "raise":
                raise botocore.exceptions.ResponseStreamingError(error="Connection broken: IncompleteRead")
            return b""
        if self._left is not None:
            size = min(size, self._left)
            self._left -= size
        return self._stream.read(size)

    def close(self) -> None:
        self.closed = True


def resuming(breaks: list[int | None], how: str) -> tuple[ResumingBody, list[int]]:
    """A body whose first response and each re-opened one break after the next count in ``breaks``."""
    stored = StoredObject("k.jsonl.gz", "etag", len(CONTENT))
    reopened_at: list[int] = []

    def reopen(offset: int) -> BreakingBody:
        reopened_at.append(offset)
        return BreakingBody(CONTENT, offset, breaks.pop(0) if breaks else None, how)

    first = BreakingBody(CONTENT, 0, breaks.pop(0), how)
    return ResumingBody(first, stored, reopen, settings=NO_WAIT), reopened_at


@pytest.mark.parametrize("how", ["raise", "end-early"])
def test_a_body_that_breaks_twice_is_read_whole_from_where_it_broke(how):
    body, reopened_at = resuming([100_000, 50_000, None], how)
    assert list(iter_gzip_lines(body, chunk_size=64 * 1024)) == LINES
    assert reopened_at == [100_000, 150_000]


def test_a_body_that_keeps_breaking_fails_after_the_attempts():
    body, reopened_at = resuming([1000, 0, 0, 0, 0, 0], "raise")
    with pytest.raises(botocore.exceptions.ResponseStreamingError):
        list(iter_gzip_lines(body, chunk_size=4096))
    assert len(reopened_at) == NO_WAIT.attempts - 1


def test_the_content_spans_several_breaks():
    assert len(CONTENT) > 400_000


class FirstBodyBreaks:
    """An S3 client whose plain GETs return a body that breaks after 100 kB; ranged GETs are real."""

    def __init__(self, client) -> None:
        self._client = client
        self.ranged_requests: list[tuple[str, str]] = []

    def get_object(self, **request):
        response = self._client.get_object(**request)
        if "Range" in request:
            self.ranged_requests.append((request["Range"], request["IfMatch"]))
        else:
            response["Body"] = BreakingBody(response["Body"].read(), 0, 100_000, "raise")
        return response


@pytest.mark.integration
def test_a_real_object_resumes_with_a_range_request_pinned_to_its_etag(raw_event_store):
    key = f"{raw_event_store.prefix}/big.jsonl.gz"
    raw_event_store.client.put_object(Bucket=raw_event_store.bucket, Key=key, Body=CONTENT)
    client = FirstBodyBreaks(raw_event_store.client)
    store = RawEventStore(raw_event_store.bucket, raw_event_store.prefix, client)

    with store.open_lines(key) as (stored, lines):
        assert list(lines) == LINES
    assert client.ranged_requests == [("bytes=100000-", f'"{stored.etag}"')]


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GetObject",
    )


def refused_resumption(error: botocore.exceptions.ClientError) -> ResumingBody:
    """A body that breaks after 100 kB, whose Range request is answered with ``error``."""

    def reopen(offset: int) -> BreakingBody:
        raise error

    stored = StoredObject("k.jsonl.gz", "etag", len(CONTENT))
    return ResumingBody(BreakingBody(CONTENT, 0, 100_000, "raise"), stored, reopen, settings=NO_WAIT)


def test_a_resumption_the_server_refuses_is_a_read_error_that_says_where_and_why():
    """An outage that outlasts botocore's retries of the Range request: a read error (``OSError``,
    as any file's), not an S3 API error, so the loader stops at a line and says so."""
    body = refused_resumption(client_error("SlowDown", 503))

    with pytest.raises(ObjectReadError) as refused:
        list(iter_gzip_lines(body, chunk_size=64 * 1024))

    assert isinstance(refused.value, OSError)
    assert str(refused.value) == (
        f"k.jsonl.gz: the connection broke after 100,000 of {len(CONTENT):,} bytes and the rest "
        "could not be requested: ClientError: An error occurred (SlowDown) when calling the "
        "GetObject operation: SlowDown message"
    )
    assert isinstance(refused.value.__cause__, botocore.exceptions.ClientError)


def test_an_object_replaced_while_it_was_read_is_a_read_error_that_says_so():
    body = refused_resumption(client_error("PreconditionFailed", 412))

    with pytest.raises(ObjectReadError) as replaced:
        list(iter_gzip_lines(body, chunk_size=64 * 1024))

    assert str(replaced.value) == (
        f"k.jsonl.gz: the object was replaced while it was read (after 100,000 of {len(CONTENT):,} "
        "bytes, its ETag changed); read it again from the start"
    )
