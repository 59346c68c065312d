"""Reading event objects without Dagster: an S3 client from the environment, listings, and
streaming gzip lines that survive a broken connection.

:class:`~amplitude_pipeline.storage.s3.RawEventStore` (the Dagster resource) and the mapping
assistant (``python -m amplitude_pipeline.mapping``, plain Python) read objects through the same
functions here, so both see the same lines and the same errors.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import urllib3.exceptions

from amplitude_pipeline.inflate import GzipMemberInflater
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import DEFAULT_RETRY, RetrySettings, describe_error, retrying

_READ_CHUNK = 1 << 18  # ~1.5 MiB of lines a block: the read-ahead holds a few, not tens of MiB
_READ_AHEAD_BLOCKS = 4
_UTF8_BOM = b"\xef\xbb\xbf"
MAX_LIST_PAGE_SIZE = 1000  # S3 returns at most this many keys per ListObjectsV2 request


def s3_client_from_env() -> Any:
    """A boto3 S3 client configured as the code location's ``S3Resource`` is (CONTRACT §2).

    ``S3_ENDPOINT_URL`` (unset: AWS) and ``AWS_REGION``; credentials come from boto3's own chain
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a role), never from here. botocore's
    ``standard`` retry mode with the pipeline's number of attempts, as ``defs/resources.py`` sets.
    """
    config = botocore.config.Config(retries={"max_attempts": DEFAULT_RETRY.attempts - 1, "mode": "standard"})
    return boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or None,
        config=config,
    )


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


def list_object_pages(
    client: Any,
    bucket: str,
    prefix: str,
    *,
    start_after: str | None = None,
    page_size: int = MAX_LIST_PAGE_SIZE,
) -> Iterator[ListingPage]:
    """Every object under ``prefix`` (recursively) whose key sorts after ``start_after``, in
    S3's lexical key order, one ListObjectsV2 request per page.

    Pages are requested only as they are consumed, so a caller that stops early has made
    only the requests it used. A full page that the server calls the last one is checked
    with one more request: SeaweedFS ends a listing early (``IsTruncated`` false) when a full
    page ends on a "directory" object (``dir/``) that has keys under it.
    """
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
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
def open_object_lines(
    client: Any, bucket: str, key: str, log: Log | None = None
) -> Iterator[tuple[StoredObject, Iterator[bytes]]]:
    """Stream a gzip JSON-lines object line by line, with the ETag of exactly what is read.

    A connection that breaks mid-body is resumed where it broke (see :class:`ResumingBody`).
    """
    response: dict[str, Any] = client.get_object(Bucket=bucket, Key=key)
    stored = StoredObject(key=key, etag=response["ETag"].strip('"'), size=response["ContentLength"])

    def reopen(offset: int) -> Any:
        ranged = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-", IfMatch=response["ETag"])
        return ranged["Body"]

    body = ResumingBody(response["Body"], stored, reopen, log)
    lines = iter_gzip_lines(body)
    try:
        yield stored, lines
    finally:
        lines.close()  # stops the read-ahead thread before its stream goes away
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


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def iter_gzip_lines(stream: _Readable, chunk_size: int = _READ_CHUNK) -> Generator[bytes, None, None]:
    """The lines (without their newline) of a gzip stream of one or more members.

    Reading and decompressing run on a thread of their own, a few chunks ahead: inflating releases
    the GIL, so inflating overlaps the caller's parsing on the other core. Chunks are large
    and split at once, instead of ``GzipFile``'s small reads and per-line calls. Memory is a
    few chunks and their decompressed form. A stream that ends inside a member raises
    ``EOFError``, as ``gzip`` does, after every whole line before it.
    """
    for lines in _read_ahead(_gzip_line_blocks(stream, chunk_size)):
        yield from lines


def _gzip_line_blocks(stream: _Readable, chunk_size: int) -> Iterator[list[bytes]]:
    """Blocks of whole lines. A UTF-8 byte order mark before the first line is an encoding marker
    (Windows tools add it), not data; zero bytes after the last member are padding (tape and
    block tools add it), as ``gzip -d`` reads them."""
    decompressor = GzipMemberInflater()
    in_member = False
    members = 0
    in_padding = False
    first_line = True
    member_offset = 0  # where the current member starts in the compressed object
    consumed = 0
    pending = b""
    while chunk := stream.read(chunk_size):
        consumed += len(chunk)
        while chunk:
            if in_padding or (members and not in_member and not chunk.strip(b"\0")):
                if chunk.strip(b"\0"):
                    raise zlib.error(f"data after the zero padding that ends the object (byte {consumed:,})")
                in_padding = True
                break
            if not in_member:
                member_offset = consumed - len(chunk)
            in_member = True
            try:
                text = decompressor.decompress(chunk)
            except zlib.error as error:
                raise zlib.error(_not_gzip_message(error, members, member_offset)) from None
            if text:
                lines = (pending + text).split(b"\n")
                pending = lines.pop()
                if first_line and lines:
                    lines[0] = lines[0].removeprefix(_UTF8_BOM)
                    first_line = False
                yield lines
            if not decompressor.eof:
                break
            chunk = decompressor.unused_data
            decompressor = GzipMemberInflater()
            in_member = False
            members += 1
    if in_member:
        raise EOFError("compressed object ended before the end of its last gzip member (truncated?)")
    if pending:
        yield [pending.removeprefix(_UTF8_BOM) if first_line else pending]


def _not_gzip_message(error: zlib.error, members: int, member_offset: int) -> str:
    if "header" not in str(error):
        return f"{error} (in the gzip member that starts at byte {member_offset:,})"
    if members == 0:
        return f"{error}: the object is not gzip-compressed"
    return (
        f"{error}: bytes that are not gzip follow the object's last gzip member (from byte {member_offset:,})"
    )


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
