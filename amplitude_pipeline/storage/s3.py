"""The raw-event store: weekly export objects (and other Amplitude-format files) in S3."""

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import boto3.session
import botocore.exceptions
import urllib3.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from amplitude_pipeline.inflate import READ_CHUNK, Readable, gzip_line_blocks
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import DEFAULT_RETRY, RetrySettings, describe_error, retrying

DEFAULT_PREFIX = "amplitude/events"
_PART_SIZE = 64 * 1024 * 1024
_READ_AHEAD_BLOCKS = 4
MAX_LIST_PAGE_SIZE = 1000  # S3 returns at most this many keys per ListObjectsV2 request
# Multipart from disk: memory is bounded by part size x concurrency, whatever the week's size,
# and S3 makes the object visible only when the upload completes (whole or not at all).
_TRANSFER = TransferConfig(multipart_threshold=_PART_SIZE, multipart_chunksize=_PART_SIZE, max_concurrency=4)


def is_missing_object_error(error: BaseException) -> bool:
    """Whether S3 answered that the key holds no object (GET says NoSuchKey, HEAD says 404)."""
    if not isinstance(error, botocore.exceptions.ClientError):
        return False
    return error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class ListedObject(StoredObject):
    last_modified: datetime
    """UTC. For a multipart upload, S3 gives the time the upload was *initiated*."""


@dataclass(frozen=True)
class ListingPage:
    objects: list[ListedObject]
    is_last: bool


def s3_client(
    endpoint_url: str | None = None, region_name: str | None = None, attempts: int = DEFAULT_RETRY.attempts
) -> Any:
    """A boto3 S3 client with botocore's ``standard`` retries (5xx, ``SlowDown`` and other
    throttling, timeouts, resets; full-jitter backoff), ``attempts`` in all. Not ``adaptive``: its
    client-side rate limiter learns per client object. Credentials come from boto3's own chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, a role)."""
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


class RawEventStore:
    """Where the weekly exports live: ``s3://{bucket}/{prefix}/{week}.jsonl.gz``, and the other
    Amplitude-format files under the watched prefixes.

    ``client`` is a boto3 S3 client (:func:`s3_client`), made on first use when not given: one for
    the store's life, since building one costs 0.2–1 s under load and a sensor's run may open
    hundreds of files; boto3 clients are safe to share between threads.
    """

    def __init__(self, bucket: str, prefix: str = DEFAULT_PREFIX, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client = client

    def __repr__(self) -> str:
        return f"RawEventStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def week_key(self, week: str) -> str:
        return f"{self.prefix.strip('/')}/{week}.jsonl.gz"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, path: Path, key: str) -> StoredObject:
        """Upload a local file to ``key``, replacing any object there in one step."""
        client = self.client
        client.upload_file(str(path), self.bucket, key, Config=_TRANSFER)
        head = client.head_object(Bucket=self.bucket, Key=key)
        return StoredObject(key=key, etag=head["ETag"].strip('"'), size=head["ContentLength"])

    def stat(self, key: str) -> StoredObject | None:
        client = self.client
        try:
            head = client.head_object(Bucket=self.bucket, Key=key)
        except client.exceptions.ClientError as error:
            if is_missing_object_error(error):
                return None
            raise
        return StoredObject(key=key, etag=head["ETag"].strip('"'), size=head["ContentLength"])

    def list_pages(
        self, prefix: str, *, start_after: str | None = None, page_size: int = MAX_LIST_PAGE_SIZE
    ) -> Iterator[ListingPage]:
        """Every object under ``prefix`` (recursively) whose key sorts after ``start_after``, in
        S3's lexical key order, one ListObjectsV2 request per page.

        Pages are requested only as they are consumed, so a caller that stops early has made
        only the requests it used. A full page that the server calls the last one is checked
        with one more request: SeaweedFS ends a listing early (``IsTruncated`` false) when a full
        page ends on a "directory" object (``dir/``) that has keys under it.
        """
        client = self.client
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": page_size}
        if start_after:
            request["StartAfter"] = start_after
        while True:
            response = client.list_objects_v2(**request)
            objects = [
                ListedObject(
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size=item["Size"],
                    last_modified=item["LastModified"].astimezone(UTC),
                )
                for item in response.get("Contents", [])
            ]
            token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
            is_last = token is None and len(objects) < page_size
            yield ListingPage(objects=objects, is_last=is_last)
            if is_last:
                return
            if token is not None:
                request["ContinuationToken"] = token
            else:
                request.pop("ContinuationToken", None)
                request["StartAfter"] = objects[-1].key

    @contextmanager
    def open_lines(self, key: str, log: Log | None = None) -> Iterator[tuple[StoredObject, Iterator[bytes]]]:
        """Stream a gzip JSON-lines object line by line, with the ETag of exactly what is read."""
        with self.open_object(key, log) as (stored, body):
            lines = iter_gzip_lines(body)
            try:
                yield stored, lines
            finally:
                lines.close()  # stops the read-ahead thread before its stream goes away

    @contextmanager
    def open_object(self, key: str, log: Log | None = None) -> Iterator[tuple[StoredObject, "ResumingBody"]]:
        """An object's bytes as they are stored, with the ETag of exactly what is read.

        A connection that breaks mid-body is resumed where it broke (see :class:`ResumingBody`).
        """
        client = self.client
        response: dict[str, Any] = client.get_object(Bucket=self.bucket, Key=key)
        stored = StoredObject(key=key, etag=response["ETag"].strip('"'), size=response["ContentLength"])

        def reopen(offset: int) -> Any:
            ranged = client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={offset}-", IfMatch=response["ETag"]
            )
            return ranged["Body"]

        body = ResumingBody(response["Body"], stored, reopen, log)
        try:
            yield stored, body
        finally:
            body.close()


# What a body read raises when the connection breaks or stalls mid-object (botocore wraps
# urllib3's errors in some versions and not in others).
_BROKEN_READ_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


class _BodyEndedEarlyError(ConnectionError):
    """The server ended the body before ``Content-Length`` bytes."""


class ObjectReadError(OSError):
    """The rest of an object could not be had: its connection broke and the request for the rest
    failed beyond botocore's retries (an outage), or the object was replaced in the meantime.

    An ``OSError``, as any failed read of a stream is: whoever reads the lines sees a read that
    failed at a position, not an S3 API call.
    """


class ResumingBody:
    """An object's bytes that survive a broken connection.

    botocore retries the request, not a body that breaks half-way through a multi-GB object.
    This reader counts the bytes it has handed out and, when the connection breaks, stalls or
    ends early, asks for the rest with a ``Range`` request pinned to the same content
    (``If-Match`` the ETag), through the pipeline's one retry mechanism. The decompressor reading
    from it never notices: it keeps its state, and no line is read twice. When that request fails
    (beyond botocore's own retries) the read fails with :class:`ObjectReadError`.
    """

    def __init__(
        self,
        body: Any,
        stored: StoredObject,
        reopen: Callable[[int], Any],
        log: Log | None = None,
        settings: RetrySettings = DEFAULT_RETRY,
    ) -> None:
        self._body = body
        self._stored = stored
        self._reopen = reopen
        self._offset = 0
        self._retrying = retrying(
            f"reading s3 object {stored.key}",
            lambda error: isinstance(error, _BROKEN_READ_ERRORS),
            settings=settings,
            log=log,
        )

    def read(self, size: int, /) -> bytes:
        return self._retrying(self._read_once, size)

    def _read_once(self, size: int) -> bytes:
        if self._body is None:
            self._body = self._reopen_rest()
        try:
            data: bytes = self._body.read(size)
            if not data and self._offset < self._stored.size:
                raise _BodyEndedEarlyError(
                    f"the body ended after {self._offset:,} of {self._stored.size:,} bytes"
                )
        except _BROKEN_READ_ERRORS:
            self._discard_body()
            raise
        self._offset += len(data)
        return data

    def _reopen_rest(self) -> Any:
        key, done, size = self._stored.key, self._offset, self._stored.size
        try:
            return self._reopen(done)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"PreconditionFailed", "412"}:
                raise ObjectReadError(
                    f"{key}: the object was replaced while it was read (after {done:,} of {size:,} "
                    "bytes, its ETag changed); read it again from the start"
                ) from error
            raise ObjectReadError(
                f"{key}: the connection broke after {done:,} of {size:,} bytes and the rest could "
                f"not be requested: {describe_error(error)}"
            ) from error

    def _discard_body(self) -> None:
        body, self._body = self._body, None
        with contextlib.suppress(Exception):
            body.close()

    def close(self) -> None:
        if self._body is not None:
            self._discard_body()


def iter_gzip_lines(stream: Readable, chunk_size: int = READ_CHUNK) -> Generator[bytes, None, None]:
    """The lines (without their newline) of a gzip stream of one or more members
    (:func:`~amplitude_pipeline.inflate.gzip_line_blocks`).

    Reading and decompressing run on a thread of their own, a few chunks ahead: inflating releases
    the GIL, so inflating overlaps the caller's parsing on the other core. Memory is a few chunks
    and their decompressed form. A stream that ends inside a member raises ``EOFError``, as
    ``gzip`` does, after every whole line before it.
    """
    for lines in _read_ahead(gzip_line_blocks(stream, chunk_size)):
        yield from lines


_T = TypeVar("_T")
_END = object()


def _read_ahead(blocks: Iterator[_T], depth: int = _READ_AHEAD_BLOCKS) -> Iterator[_T]:
    """``blocks``, produced on a background thread at most ``depth`` items ahead.

    The producer's exception is raised here, after the items it produced before it. When the
    consumer stops early the producer is told to stop and is not waited for.
    """
    handoff: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def offer(item: object) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not offer(block):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            offer(error)
            return
        offer(_END)

    threading.Thread(target=produce, name="gzip-read-ahead", daemon=True).start()
    try:
        while (item := handoff.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
