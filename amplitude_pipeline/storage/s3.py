"""The raw-event store: weekly export objects (and other Amplitude-format files) in S3.

The reading itself (listings, streaming gzip lines, resuming a broken body) is plain Python in
:mod:`amplitude_pipeline.storage.objects`; this module is its Dagster resource.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from dagster import ConfigurableResource, ResourceDependency
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.objects import (
    MAX_LIST_PAGE_SIZE,
    ListedObject,
    ListingPage,
    ObjectReadError,
    ResumingBody,
    StoredObject,
    is_missing_object_error,
    iter_gzip_lines,
    list_object_pages,
    open_object_lines,
)

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_LIST_PAGE_SIZE",
    "ListedObject",
    "ListingPage",
    "ObjectReadError",
    "RawEventStore",
    "ResumingBody",
    "StoredObject",
    "is_missing_object_error",
    "iter_gzip_lines",
]

DEFAULT_PREFIX = "amplitude/events"
_PART_SIZE = 64 * 1024 * 1024
# Multipart from disk: memory is bounded by part size x concurrency, whatever the week's size,
# and S3 makes the object visible only when the upload completes (whole or not at all).
_TRANSFER = TransferConfig(multipart_threshold=_PART_SIZE, multipart_chunksize=_PART_SIZE, max_concurrency=4)


class RawEventStore(ConfigurableResource):
    """Where the weekly exports live: ``s3://{bucket}/{prefix}/{week}.jsonl.gz``."""

    bucket: str
    prefix: str = DEFAULT_PREFIX
    s3: ResourceDependency[S3Resource]
    _client: Any = PrivateAttr(default=None)

    @property
    def client(self) -> Any:
        """One boto3 client for the resource's life: ``S3Resource.get_client()`` builds a new
        session each call (0.2–1 s under load), and a sensor run may open hundreds of files.
        boto3 clients are safe to share between threads."""
        if self._client is None:
            self._client = self.s3.get_client()
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
        """Every object under ``prefix`` whose key sorts after ``start_after``, page by page
        (:func:`~amplitude_pipeline.storage.objects.list_object_pages`)."""
        return list_object_pages(
            self.client, self.bucket, prefix, start_after=start_after, page_size=page_size
        )

    @contextmanager
    def open_lines(self, key: str, log: Log | None = None) -> Iterator[tuple[StoredObject, Iterator[bytes]]]:
        """Stream a gzip JSON-lines object line by line, with the ETag of exactly what is read
        (:func:`~amplitude_pipeline.storage.objects.open_object_lines`)."""
        with open_object_lines(self.client, self.bucket, key, log) as opened:
            yield opened
