"""Which objects under the watched S3 prefixes still need a load: a bounded slice per call.

A listing cursor of the ``since_key`` kind (remember the greatest key seen, list after it) misses
every object written later under a key that sorts before it: an Amplitude S3-export file of a
late hour, a re-exported week, a replaced object. So the watched prefixes are instead *swept*,
whole, again and again, each sweep spread over as many calls as it needs:

- **Position.** A call lists at most ``max_pages_per_tick`` pages and resumes the current
  sweep after the last key it decided on (``StartAfter``); the next sweep starts at the top.
- **Watermark.** An object last modified before a prefix's watermark was listed by a completed
  sweep and is not looked at again. When a sweep completes, the watermark becomes the time the
  sweep *started* minus ``upload_margin``: any object that became visible after that start is
  listed by the next sweep, and its ``LastModified`` is at most the margin older than the moment
  it became visible (S3 dates a multipart upload from its *initiation*, so the margin must cover
  the longest upload, and any clock skew between this host and S3).
- **Requested.** Objects requested by this sweep or the previous one that the next sweep would
  still list (last modified at or after the watermark it will set) are remembered as
  ``{key: [etag, last_modified]}``, so that a load that is queued, running or failed is not
  requested again. Entries are dropped when the watermark passes them, and as soon as the DWH's
  checkpoint table says their content is loaded to the end (the checkpoint then skips it).
- **Checkpoints.** Before an object is requested, ``pipeline_file_checkpoints`` (read only) is
  asked whether that key is finished with that ETag: a reset or lost cursor re-lists everything
  once but requests only what is not loaded yet.

An object is requested when its key ends in ``.json.gz`` or ``.jsonl.gz``, it is not older than
the watermark, and neither the requested set nor a finished checkpoint has its (key, ETag). A
replaced object has a new ETag and is requested again; markers (``_SUCCESS``), other suffixes and
"directory" keys never are.

The cursor is JSON (``DiscoveryCursor.to_json``)::

    {"v": 1, "turn": 0, "prefixes": {"amplitude/events/": {
        "watermark": "2024-05-06T09:00:00+00:00",     # null until a first sweep completes
        "sweep_started": "2024-05-06T10:00:12+00:00",  # null between sweeps
        "after": "amplitude/events/2024-04-29.jsonl.gz",  # null at the top of a sweep
        "requested": {"amplitude/events/2024-05-06.jsonl.gz": ["9b2c0e…", 1714986000]}}}}

(``last_modified`` in epoch seconds; ``turn`` rotates which prefix a call starts with, so that
a huge prefix does not starve the others.) No Dagster here: the sensor is a thin layer on top.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Final, Protocol

import orjson
from sqlalchemy import inspect, select

from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.dwh import CHECKPOINT_TABLE, DWHRepository
from amplitude_pipeline.storage.s3 import MAX_LIST_PAGE_SIZE, ListedObject, ListingPage

EVENT_FILE_SUFFIXES: Final = (".json.gz", ".jsonl.gz")
CURSOR_VERSION: Final = 1
_LOOKUP_CHUNK: Final = 1000

_logger: Final[Log] = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveryLimits:
    """How much one call may do, and how runs are cut."""

    page_size: int = MAX_LIST_PAGE_SIZE
    max_pages_per_tick: int = 20
    max_files_per_tick: int = 500
    max_files_per_run: int = 100
    max_bytes_per_run: int = 2 * 1024**3
    upload_margin: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        for name in ("page_size", "max_pages_per_tick", "max_files_per_tick", "max_files_per_run"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.page_size > MAX_LIST_PAGE_SIZE:
            raise ValueError(f"page_size is at most {MAX_LIST_PAGE_SIZE} (S3's limit), not {self.page_size}")
        if self.max_bytes_per_run < 1:
            raise ValueError(f"max_bytes_per_run must be positive, not {self.max_bytes_per_run}")
        if self.upload_margin < timedelta(0):
            raise ValueError(f"upload_margin must not be negative, not {self.upload_margin}")


def is_event_file(key: str) -> bool:
    return key.endswith(EVENT_FILE_SUFFIXES)


def normalize_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Watched prefixes as "directories" (``a/b/``; ``/`` is the whole bucket), without duplicates
    and without any prefix that another one already covers, so that no key is listed twice."""
    cleaned = set()
    for raw in prefixes:
        prefix = raw.strip()
        if not prefix:
            continue
        prefix = prefix.strip("/")
        cleaned.add(f"{prefix}/" if prefix else "")
    return tuple(
        sorted(p for p in cleaned if not any(p != other and p.startswith(other) for other in cleaned))
    )


@dataclass
class PrefixSweep:
    """One prefix's state: see the module's docstring."""

    watermark: datetime | None = None
    sweep_started: datetime | None = None
    after: str | None = None
    requested: dict[str, tuple[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "watermark": _isoformat(self.watermark),
            "sweep_started": _isoformat(self.sweep_started),
            "after": self.after,
            "requested": {key: [etag, modified] for key, (etag, modified) in sorted(self.requested.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PrefixSweep:
        return cls(
            watermark=_parse_time(data.get("watermark")),
            sweep_started=_parse_time(data.get("sweep_started")),
            after=data.get("after"),
            requested={
                key: (str(etag), int(modified)) for key, (etag, modified) in data["requested"].items()
            },
        )


@dataclass
class DiscoveryCursor:
    prefixes: dict[str, PrefixSweep] = field(default_factory=dict)
    turn: int = 0

    @classmethod
    def from_json(cls, text: str | None, log: Log | None = None) -> DiscoveryCursor:
        """The cursor stored by a previous call; a fresh one when there is none or it is not ours
        (its checkpoint lookups keep a fresh start from requesting what is loaded already)."""
        if not text:
            return cls()
        try:
            data = orjson.loads(text)
            if data.get("v") != CURSOR_VERSION:
                raise ValueError(f"cursor version {data.get('v')!r}, expected {CURSOR_VERSION}")
            return cls(
                prefixes={prefix: PrefixSweep.from_dict(state) for prefix, state in data["prefixes"].items()},
                turn=int(data.get("turn", 0)),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            (log or _logger).warning(f"ignoring an unreadable cursor and starting over: {error}")
            return cls()

    def to_json(self) -> str:
        data = {
            "v": CURSOR_VERSION,
            "turn": self.turn,
            "prefixes": {prefix: state.to_dict() for prefix, state in sorted(self.prefixes.items())},
        }
        return orjson.dumps(data).decode()


class ObjectListing(Protocol):
    def list_pages(
        self, prefix: str, *, start_after: str | None, page_size: int
    ) -> Iterator[ListingPage]: ...


FinishedLookup = Callable[[Collection[str]], Mapping[str, str]]
"""``{key: etag}`` of the keys among those given that are loaded to the end."""


@dataclass
class Discovery:
    """What one call found: the files to load, in listing order, and the cursor to store."""

    files: list[ListedObject]
    cursor: DiscoveryCursor
    pages_listed: int = 0
    objects_listed: int = 0
    sweeps_completed: list[str] = field(default_factory=list)


def discover(
    cursor: DiscoveryCursor,
    prefixes: Sequence[str],
    listing: ObjectListing,
    finished: FinishedLookup,
    *,
    now: datetime,
    limits: DiscoveryLimits,
) -> Discovery:
    """One bounded step of the sweeps over ``prefixes`` (normalised, see ``normalize_prefixes``).

    Lists at most ``limits.max_pages_per_tick`` pages, selects at most
    ``limits.max_files_per_tick`` files and completes at most one sweep per prefix.
    ``cursor`` is not changed; the new one is in the result.
    """
    next_cursor = DiscoveryCursor(
        prefixes={prefix: _copy(cursor.prefixes.get(prefix)) for prefix in prefixes},
        turn=(cursor.turn + 1) % max(len(prefixes), 1),
    )
    for state in next_cursor.prefixes.values():
        _forget_loaded(state, finished)
    found = Discovery(files=[], cursor=next_cursor)
    start = cursor.turn % max(len(prefixes), 1)
    for prefix in [*prefixes[start:], *prefixes[:start]]:
        if found.pages_listed >= limits.max_pages_per_tick or len(found.files) >= limits.max_files_per_tick:
            break
        _sweep(prefix, next_cursor.prefixes[prefix], listing, finished, now, limits, found)
    return found


def _sweep(
    prefix: str,
    state: PrefixSweep,
    listing: ObjectListing,
    finished: FinishedLookup,
    now: datetime,
    limits: DiscoveryLimits,
    found: Discovery,
) -> None:
    if state.sweep_started is None:
        state.sweep_started = now.astimezone(UTC).replace(microsecond=0)
        state.after = None
    next_watermark = state.sweep_started - limits.upload_margin
    pages = listing.list_pages(prefix, start_after=state.after, page_size=limits.page_size)
    while found.pages_listed < limits.max_pages_per_tick and len(found.files) < limits.max_files_per_tick:
        page = next(pages)
        found.pages_listed += 1
        found.objects_listed += len(page.objects)
        candidates = [obj for obj in page.objects if _may_need_load(obj, state)]
        loaded = finished([obj.key for obj in candidates]) if candidates else {}
        wanted = {obj.key for obj in candidates if loaded.get(obj.key) != obj.etag}
        for obj in page.objects:
            if obj.key in wanted:
                if len(found.files) >= limits.max_files_per_tick:
                    return  # the next call resumes at this object
                found.files.append(obj)
                if obj.last_modified >= next_watermark:
                    state.requested[obj.key] = (obj.etag, int(obj.last_modified.timestamp()))
                else:  # the next sweep will not list it again
                    state.requested.pop(obj.key, None)
            state.after = obj.key
        if page.is_last:
            _complete(state, next_watermark)
            found.sweeps_completed.append(prefix)
            return


def _may_need_load(obj: ListedObject, state: PrefixSweep) -> bool:
    if not is_event_file(obj.key):
        return False
    if state.watermark is not None and obj.last_modified < state.watermark:
        return False
    requested = state.requested.get(obj.key)
    return requested is None or requested[0] != obj.etag


def _complete(state: PrefixSweep, watermark: datetime) -> None:
    state.watermark = watermark
    state.sweep_started = None
    state.after = None
    oldest_kept = watermark.timestamp()
    state.requested = {key: entry for key, entry in state.requested.items() if entry[1] >= oldest_kept}


def _forget_loaded(state: PrefixSweep, finished: FinishedLookup) -> None:
    """Drop the requested entries whose content the checkpoint table says is loaded."""
    keys = iter(list(state.requested))
    while chunk := list(islice(keys, _LOOKUP_CHUNK)):
        for key, etag in finished(chunk).items():
            if state.requested.get(key, ("",))[0] == etag:
                del state.requested[key]


def _copy(state: PrefixSweep | None) -> PrefixSweep:
    if state is None:
        return PrefixSweep()
    return PrefixSweep(state.watermark, state.sweep_started, state.after, dict(state.requested))


@dataclass(frozen=True)
class FileGroup:
    """Files loaded by one run."""

    files: tuple[ListedObject, ...]

    @property
    def total_bytes(self) -> int:
        return sum(obj.size for obj in self.files)

    @property
    def run_key(self) -> str:
        """The same for the same (key, ETag) pairs, whatever their order: Dagster launches a
        run key once per sensor, so one group of contents is never loaded twice by it."""
        pairs = "\n".join(sorted(f"{obj.key}\t{obj.etag}" for obj in self.files))
        return f"s3-files-{hashlib.sha256(pairs.encode()).hexdigest()[:32]}"


def group_into_runs(files: Sequence[ListedObject], limits: DiscoveryLimits) -> list[FileGroup]:
    """Consecutive files in runs of at most ``max_files_per_run`` files and ``max_bytes_per_run``
    bytes (a larger file runs alone)."""
    groups: list[FileGroup] = []
    current: list[ListedObject] = []
    size = 0
    for obj in files:
        if current and (
            len(current) >= limits.max_files_per_run or size + obj.size > limits.max_bytes_per_run
        ):
            groups.append(FileGroup(tuple(current)))
            current, size = [], 0
        current.append(obj)
        size += obj.size
    if current:
        groups.append(FileGroup(tuple(current)))
    return groups


def finished_checkpoint_etags(dwh: DWHRepository, keys: Collection[str]) -> dict[str, str]:
    """``{file_key: etag}`` of the keys whose checkpoint says loaded to the end. Reads only; a DWH
    where no load ever ran (no checkpoint table yet) has none."""
    if not keys:
        return {}
    checkpoints = dwh.tables.checkpoints
    found: dict[str, str] = {}
    with dwh.engine.connect() as conn:
        if not inspect(conn).has_table(CHECKPOINT_TABLE, schema=dwh.db_schema):
            return {}
        remaining = iter(keys)
        while chunk := list(islice(remaining, _LOOKUP_CHUNK)):
            rows = conn.execute(
                select(checkpoints.c.file_key, checkpoints.c.etag).where(
                    checkpoints.c.file_key.in_(chunk), checkpoints.c.finished
                )
            )
            found.update({row.file_key: row.etag for row in rows})
    return found


def _isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone in the cursor: {text!r}")
    return moment
