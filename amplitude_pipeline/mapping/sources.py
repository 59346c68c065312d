"""SOURCE arguments (CONTRACT §9): a local ``.json.gz``/``.jsonl.gz`` file, ``s3://bucket/key``,
or ``s3://bucket/prefix/`` (every event file under it, in key order)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from amplitude_pipeline.storage.s3 import RawEventStore, is_missing_object_error, iter_gzip_lines

__all__ = ["EVENT_FILE_SUFFIXES", "Source", "SourceError", "resolve_sources"]

EVENT_FILE_SUFFIXES: Final = (".json.gz", ".jsonl.gz")


class SourceError(ValueError):
    """A SOURCE argument that names nothing to read: a usage error."""


@dataclass(frozen=True)
class Source:
    """One event file, local (``path``) or in S3 (``bucket``/``key``)."""

    label: str
    path: Path | None = None
    bucket: str = ""
    key: str = ""

    @contextmanager
    def open_lines(self, s3_client: Callable[[], Any]) -> Iterator[Iterator[bytes]]:
        """The file's lines, streamed as the loader reads them (``storage/s3.py``)."""
        if self.path is None:
            with RawEventStore(self.bucket, "", s3_client()).open_lines(self.key) as (_, lines):
                yield lines
            return
        with self.path.open("rb") as stream:
            lines = iter_gzip_lines(stream)
            try:
                yield lines
            finally:
                lines.close()  # stops the read-ahead thread before the file closes


def resolve_sources(arguments: list[str], s3_client: Callable[[], Any]) -> list[Source]:
    """Every file the arguments name, in argument order; :class:`SourceError` for an argument that
    names none. S3 errors other than "no such bucket/key" propagate (botocore's own)."""
    sources: list[Source] = []
    for argument in arguments:
        if argument.startswith("s3://"):
            sources += _s3_sources(argument, s3_client)
        else:
            sources.append(_local_source(argument))
    return sources


def _local_source(argument: str) -> Source:
    path = Path(argument)
    if not path.is_file():
        raise SourceError(f"{argument}: no such file")
    if not argument.endswith(EVENT_FILE_SUFFIXES):
        raise SourceError(f"{argument}: not an event file (expected a name ending in .json.gz or .jsonl.gz)")
    return Source(argument, path=path)


def _s3_sources(argument: str, s3_client: Callable[[], Any]) -> list[Source]:
    bucket, _, key = argument.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError(f"{argument}: no bucket (expected s3://bucket/key or s3://bucket/prefix/)")
    client = s3_client()
    if key and not key.endswith("/"):
        if not key.endswith(EVENT_FILE_SUFFIXES):
            raise SourceError(
                f"{argument}: not an event file (expected a key ending in .json.gz or .jsonl.gz, "
                "or a prefix ending in /)"
            )
        try:
            client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            if is_missing_object_error(error) or _is_missing_bucket(error):
                raise SourceError(f"{argument}: no such object") from None
            raise
        return [Source(argument, bucket=bucket, key=key)]
    found: list[Source] = []
    try:
        for page in RawEventStore(bucket, "", client).list_pages(key):
            found += [
                Source(f"s3://{bucket}/{listed.key}", bucket=bucket, key=listed.key)
                for listed in page.objects
                if listed.key.endswith(EVENT_FILE_SUFFIXES)
            ]
    except Exception as error:
        if _is_missing_bucket(error):
            raise SourceError(f"{argument}: no such bucket") from None
        raise
    if not found:
        raise SourceError(f"{argument}: no .json.gz or .jsonl.gz object under this prefix")
    return found


def _is_missing_bucket(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket"
