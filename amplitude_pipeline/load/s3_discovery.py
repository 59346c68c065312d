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
- **Requested.** Objects requested are remembered as ``{key: [etag, last_modified]}``, so that
  a load that is queued, running or failed is not requested again, also when a tick lists them
  again (see *Order*). Entries are dropped as soon as the DWH's checkpoint table says their
  content is loaded to the end (the checkpoint then skips it), and when a sweep completes with a
  watermark past them (no later sweep lists them).
- **Checkpoints.** Before an object is requested, ``pipeline_file_checkpoints`` (read only) is
  asked whether that key is finished with that ETag: a reset or lost cursor re-lists everything
  once but requests only what is not loaded yet.

An object is requested when its key ends in ``.json.gz`` or ``.jsonl.gz``, it is not older than
the watermark, and neither the requested set nor a finished checkpoint has its (key, ETag). A
replaced object has a new ETag and is requested again; markers (``_SUCCESS``), other suffixes and
"directory" keys never are.

**Order** (CONTRACT §3: files of one prefix load in the order of their data). A call requests at
most one run per prefix, its files in ``data_order_key`` order; the sensor does not call for a
prefix while a run of it is in flight or failed (``waiting``), so runs of a prefix load one after
another. Amplitude's export files sort by name in the wrong order (``_10#0`` before ``_2#0``), so
the files of one export day (``export_day``; contiguous in the listing) are put in order only once
the whole day has been listed; a call that stops within a day leaves the position before it. See
``_sweep`` for a day too large for one call to list.

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
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Final, Protocol

import orjson

from amplitude_pipeline.log import Log
from amplitude_pipeline.storage.s3 import MAX_LIST_PAGE_SIZE, ListedObject, ListingPage

EVENT_FILE_SUFFIXES: Final = (".json.gz", ".jsonl.gz")
CURSOR_VERSION: Final = 1
_AMPLITUDE_EXPORT_FILE: Final = re.compile(
    r"(?P<day>(?:[^/]*/)*\d+_\d{4}-\d{2}-\d{2}_)(?P<hour>\d+)#(?P<part>\d+)\.jsonl?\.gz"
)
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


def data_order_key(key: str) -> tuple[str, int, int, str]:
    """Where a file's data comes among the files of its prefix (CONTRACT §3).

    Amplitude's hourly S3-export files (``…/{project}_{YYYY-MM-DD}_{H}#{n}.json.gz``) by
    directory, project and date (their ``export_day``), then hour as a number, then part as a
    number: ``_2#0`` before ``_2#1`` before ``_10#0``, where the names sort ``_10#0`` first. Any
    other key by name. The two kinds compare too: an export day comes where S3 lists its keys.
    """
    match = _AMPLITUDE_EXPORT_FILE.fullmatch(key)
    if match is None:
        return (key, -1, -1, key)
    return (match["day"], int(match["hour"]), int(match["part"]), key)


def export_day(key: str) -> str | None:
    """``…/{project}_{YYYY-MM-DD}_`` for an Amplitude export file, the start of the keys of its
    directory, project and day (contiguous in S3's lexical listing); None for any other key."""
    match = _AMPLITUDE_EXPORT_FILE.fullmatch(key)
    return None if match is None else match["day"]


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
    """What one call found: at most one run of files per prefix, in data order, and the cursor to
    store."""

    runs: list[FileGroup]
    cursor: DiscoveryCursor
    pages_listed: int = 0
    objects_listed: int = 0
    sweeps_completed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[ListedObject]:
        return [obj for run in self.runs for obj in run.files]


def discover(
    cursor: DiscoveryCursor,
    prefixes: Sequence[str],
    listing: ObjectListing,
    finished: FinishedLookup,
    *,
    now: datetime,
    limits: DiscoveryLimits,
    waiting: Collection[str] = (),
) -> Discovery:
    """One bounded step of the sweeps over ``prefixes`` (normalised, see ``normalize_prefixes``).

    Lists at most ``limits.max_pages_per_tick`` pages, selects at most
    ``limits.max_files_per_tick`` files, at most one run of them per prefix, and completes at most
    one sweep per prefix. The prefixes in ``waiting`` (a run of theirs is in flight, or failed) are
    not listed: their position stays where it is until they may load again.
    ``cursor`` is not changed; the new one is in the result.
    """
    next_cursor = DiscoveryCursor(
        prefixes={prefix: _copy(cursor.prefixes.get(prefix)) for prefix in prefixes},
        turn=(cursor.turn + 1) % max(len(prefixes), 1),
    )
    for state in next_cursor.prefixes.values():
        _forget_loaded(state, finished)
    found = Discovery(runs=[], cursor=next_cursor)
    start = cursor.turn % max(len(prefixes), 1)
    for prefix in [*prefixes[start:], *prefixes[:start]]:
        if found.pages_listed >= limits.max_pages_per_tick or len(found.files) >= limits.max_files_per_tick:
            break
        if prefix in waiting:
            continue
        run = _RunBuilder(
            max_files=min(limits.max_files_per_run, limits.max_files_per_tick - len(found.files)),
            max_bytes=limits.max_bytes_per_run,
        )
        _sweep(prefix, next_cursor.prefixes[prefix], listing, finished, now, limits, found, run)
        if run.files:
            found.runs.append(FileGroup(prefix, tuple(run.files)))
    return found


@dataclass
class _RunBuilder:
    """The files of one run, taken in data order while they fit (a file larger than ``max_bytes``
    runs alone)."""

    max_files: int
    max_bytes: int
    files: list[ListedObject] = field(default_factory=list)
    size: int = 0

    @property
    def full(self) -> bool:
        return len(self.files) >= self.max_files or self.size >= self.max_bytes

    def take(self, group: Iterable[ListedObject]) -> bool:
        """Take ``group``'s files in data order while they fit; whether all of them did."""
        for obj in sorted(group, key=lambda listed: data_order_key(listed.key)):
            if self.files and (len(self.files) >= self.max_files or self.size + obj.size > self.max_bytes):
                return False
            self.files.append(obj)
            self.size += obj.size
        return True


def _sweep(
    prefix: str,
    state: PrefixSweep,
    listing: ObjectListing,
    finished: FinishedLookup,
    now: datetime,
    limits: DiscoveryLimits,
    found: Discovery,
    run: _RunBuilder,
) -> None:
    """Continue ``prefix``'s sweep one group at a time: an export day (``export_day``), or any
    other single key.

    A group's files are taken only once the whole group has been listed, so that they can be
    put in data order, and the position moves past a group only once all of its files are
    taken. A tick that stops in the middle of a group (its pages or its run are used up) leaves
    the position before that group, and the next tick lists the group again whole: what this
    tick took is in the requested set by then (or loaded), and the rest follows it in order.

    An export day too large for one tick to list whole (more than ``max_pages_per_tick`` pages)
    cannot be put in order as a whole: rather than stall on it, a tick that lists nothing but
    part of it takes that part in data order, and the next tick goes on after it. Such a day
    loads in data order part by part only.
    """
    if state.sweep_started is None:
        state.sweep_started = now.astimezone(UTC).replace(microsecond=0)
        state.after = None
    next_watermark = state.sweep_started - limits.upload_margin
    started_after = state.after
    last_key = state.after
    day: str | None = None
    before_group = state.after
    group_files: list[ListedObject] = []

    def take_group() -> bool:
        """Take the open group's files, in data order, while the run has room; whether all fit."""
        taken_before = len(run.files)
        everything_taken = run.take(group_files)
        for obj in run.files[taken_before:]:
            state.requested[obj.key] = (obj.etag, int(obj.last_modified.timestamp()))
        return everything_taken

    pages = listing.list_pages(prefix, start_after=state.after, page_size=limits.page_size)
    while found.pages_listed < limits.max_pages_per_tick:
        page = next(pages)
        found.pages_listed += 1
        found.objects_listed += len(page.objects)
        candidates = [obj for obj in page.objects if _may_need_load(obj, state)]
        loaded = finished([obj.key for obj in candidates]) if candidates else {}
        wanted = {obj.key for obj in candidates if loaded.get(obj.key) != obj.etag}
        for obj in page.objects:
            if day is None or not obj.key.startswith(day):  # the open group is complete
                if not take_group():
                    state.after = before_group
                    return
                if run.full:
                    state.after = last_key
                    return
                day, before_group, group_files = export_day(obj.key), last_key, []
            if obj.key in wanted:
                group_files.append(obj)
            last_key = obj.key
        if page.is_last:
            if take_group():
                _complete(state, next_watermark)
                found.sweeps_completed.append(prefix)
            else:
                state.after = before_group
            return
    # The pages are used up; an open export day may go on in the next page.
    if day is None or not group_files:
        # A single key is complete; nothing listed of a day needs a load: its rest orders alone.
        state.after = last_key if take_group() else before_group
    elif before_group == started_after:
        found.warnings.append(
            f"{prefix}: the files of {day}… fill more than {limits.max_pages_per_tick} pages of "
            f"{limits.page_size} keys: loading the part listed, in data order, before the rest "
            "(raise S3_WATCH_MAX_PAGES_PER_TICK to order such a day whole)"
        )
        state.after = last_key if take_group() else before_group
    else:
        state.after = before_group


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
    """Files of one prefix loaded by one run, in data order."""

    prefix: str
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


def _isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone in the cursor: {text!r}")
    return moment
