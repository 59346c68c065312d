"""The benchmark's weeks, generated once and cached under ``bench/.cache`` (gitignored).

Two profiles, each at 1× and 4× (4× = four times the users with the same events per user, so
the cost per event must not grow with the users):

- **heavy** (few heavy users): the simulator's own week. Each day is the Export API's response
  body exactly as the simulator serves it (``write_archive``), kept as a zip; the week's object
  is those zips merged by the project's own ``append_archive_events``, byte for byte what
  ``amplitude_events`` writes. ~35 events per user a week, ~1.8 KB each, heavy-tailed activity.
- **light** (many light users): ~100,000 users (at 1×) with 1–10 events each (uniform), over the
  same week. Users, their identities and their ``user_properties`` snapshots (every conversion of
  the mapping: regex ints, value maps, bool words, dates in both formats, floats, blanks, nulls,
  missing keys, ignored keys, anonymous users) come from the simulator's ``population``, and each
  event is built by the simulator's own ``build_event``. Versions switch inside the week as the
  simulator's do.

Besides those: a **one-line week** (the run start-up) and **user samples** of a week for the
slow baselines: every event of a subset of users, chosen by a stable hash of the user key, so
the sample keeps the week's mix of first sightings, repeats and changes per user (a prefix of
the file would be almost all first sightings).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
WEEK = date(2024, 1, 8)
# Bumped whenever a profile's generation changes, so that stale cached weeks are never measured.
HEAVY_VERSION = 1
LIGHT_VERSION = 2
# The simulator's archives are gzip level 3; the light week is written the same way.
GZIP_LEVEL = 3
LIGHT_SEED = 1010
SAMPLE_BUCKETS = 1000


@dataclass(frozen=True)
class Dataset:
    """One cached week file and what it holds."""

    name: str
    profile: str
    scale: int
    path: str
    events: int
    users: int
    compressed_bytes: int
    uncompressed_bytes: int
    day_archives: list[str] = field(default_factory=list)
    """Heavy weeks: the seven Export API response bodies (zips) the week was made from."""

    @property
    def file(self) -> Path:
        return Path(self.path)


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _cached(path: Path) -> Dataset | None:
    meta = _meta_path(path)
    if not (path.exists() and meta.exists()):
        return None
    return Dataset(**json.loads(meta.read_text()))


def _save(dataset: Dataset) -> Dataset:
    _meta_path(dataset.file).write_text(json.dumps(asdict(dataset), indent=2))
    return dataset


def _log(message: str) -> None:
    print(f"[bench data] {message}", flush=True)


def user_key(event: dict[str, Any]) -> str:
    """The key the tables use: the ``ehr_id`` when there is one, else ``a:<amplitude_id>``."""
    properties = event.get("user_properties") or {}
    ehr_id = properties.get("ehr_id")
    if isinstance(ehr_id, str) and ehr_id.strip():
        return ehr_id.strip()
    return f"a:{event.get('amplitude_id')}"


def read_lines(path: Path) -> Iterator[bytes]:
    """The non-blank lines of a gzip JSON-lines file (one or more members)."""
    with gzip.open(path, "rb") as stream:
        for line in stream:
            line = line.rstrip(b"\n")
            if line.strip():
                yield line


def _describe(path: Path, **fields: Any) -> Dataset:
    events, uncompressed, users = 0, 0, set()
    for line in read_lines(path):
        events += 1
        uncompressed += len(line) + 1
        users.add(user_key(orjson.loads(line)))
    return Dataset(
        path=str(path),
        events=events,
        users=len(users),
        compressed_bytes=path.stat().st_size,
        uncompressed_bytes=uncompressed,
        **fields,
    )


# --------------------------------------------------------------------------------------------
# heavy: the simulator's week, through the Export API's response bodies


def _heavy_config(users: int, events_per_day: int) -> Any:
    from amplitude_simulator.data import SimulatorConfig

    return SimulatorConfig(users=users, events_per_day=events_per_day)


def _write_day_archive(users: int, events_per_day: int, day: date, path: Path) -> None:
    from amplitude_simulator.archive import archive_plan, write_archive

    config = _heavy_config(users, events_per_day)
    start = datetime(day.year, day.month, day.day, 0)
    plan = archive_plan(config, start, start + timedelta(hours=23))
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        write_archive(config, plan, out)
    partial.rename(path)


def heavy_week(scale: int, users: int, events_per_day: int) -> Dataset:
    """The simulator's week with ``users`` users and ``events_per_day`` events a day."""
    name = f"heavy-u{users}-d{events_per_day}-v{HEAVY_VERSION}"
    path = CACHE / f"{name}.jsonl.gz"
    if (cached := _cached(path)) is not None:
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    days = [WEEK + timedelta(days=offset) for offset in range(7)]
    archives = [CACHE / name / f"{day.isoformat()}.zip" for day in days]
    archives[0].parent.mkdir(exist_ok=True)
    missing = [(day, archive) for day, archive in zip(days, archives, strict=True) if not archive.exists()]
    if missing:
        _log(f"{name}: generating {len(missing)} day archives with the simulator (2 processes)")
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            for future in [
                pool.submit(_write_day_archive, users, events_per_day, day, archive)
                for day, archive in missing
            ]:
                future.result()
    from amplitude_pipeline.amplitude.archive import append_archive_events

    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        for archive in archives:
            append_archive_events(archive, out)
    partial.rename(path)
    dataset = _describe(
        path, name=name, profile="heavy", scale=scale, day_archives=[str(archive) for archive in archives]
    )
    _log(
        f"{name}: {dataset.events:,} events, {dataset.users:,} users, {dataset.compressed_bytes / 2**20:.0f} MiB"
    )
    return _save(dataset)


# --------------------------------------------------------------------------------------------
# light: many users with 1–10 events each

_WEEK_START_MS = int(datetime.combine(WEEK, datetime.min.time(), tzinfo=UTC).timestamp() * 1000)
_WEEK_MS = 7 * 24 * 3_600_000

_DAY_NAMES = tuple((WEEK + timedelta(days=offset)).isoformat() for offset in range(8))


def _stamp(epoch_ms: int) -> str:
    """Amplitude's ``YYYY-MM-DD HH:MM:SS.ffffff`` for an instant of the week (or the day after)."""
    day, rest = divmod(epoch_ms - _WEEK_START_MS, 86_400_000)
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, millis = divmod(rest, 1000)
    return f"{_DAY_NAMES[day]} {hour:02d}:{minute:02d}:{second:02d}.{millis:03d}000"


def _light_event(user: Any, event_ms: int, project_id: int, rng: random.Random) -> bytes:
    """One event of the simulator's (its event builder), carrying the user's snapshot current at
    ``event_ms``."""
    from amplitude_simulator.data import EventTimes, build_event, random_event_types

    (event_type,) = random_event_types(rng, 1)
    received = event_ms + rng.randrange(50, 3_000)
    times = EventTimes(
        event_time=_stamp(event_ms),
        client_event_time=_stamp(event_ms),
        client_upload_time=_stamp(received - 20),
        server_received_time=_stamp(received),
        server_upload_time=_stamp(received - 20),
        processed_time=_stamp(received + rng.randrange(10, 800)),
    )
    return orjson.dumps(build_event(user, event_type, event_ms, times, project_id, rng))


def light_week(scale: int, users: int) -> Dataset:
    """``users`` users with 1–10 events each (uniform), spread over the week, in time order."""
    from amplitude_simulator.data import SimulatorConfig, population, scoped_random

    name = f"light-u{users}-v{LIGHT_VERSION}"
    path = CACHE / f"{name}.jsonl.gz"
    if (cached := _cached(path)) is not None:
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    _log(f"{name}: building {users:,} users with the simulator's population")
    config = SimulatorConfig(seed=LIGHT_SEED, users=users)
    people = population(config)
    schedule: list[tuple[int, int]] = []
    for user in people:
        rng = scoped_random(LIGHT_SEED, "light-events", user.index)
        schedule.extend(
            (_WEEK_START_MS + rng.randrange(_WEEK_MS), user.index) for _ in range(rng.randint(1, 10))
        )
    schedule.sort()
    _log(f"{name}: writing {len(schedule):,} events")
    rng = scoped_random(LIGHT_SEED, "light-bodies", users)
    partial = path.with_name(path.name + ".partial")
    with gzip.GzipFile(partial, "wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
        pending: list[bytes] = []
        for event_ms, index in schedule:
            pending.append(_light_event(people[index], event_ms, config.project_id, rng))
            if len(pending) == 1000:
                out.write(b"\n".join(pending) + b"\n")
                pending.clear()
        if pending:
            out.write(b"\n".join(pending) + b"\n")
    partial.rename(path)
    dataset = _describe(path, name=name, profile="light", scale=scale)
    _log(
        f"{name}: {dataset.events:,} events, {dataset.users:,} users, {dataset.compressed_bytes / 2**20:.0f} MiB"
    )
    return _save(dataset)


# --------------------------------------------------------------------------------------------
# derived weeks: one line, user samples


def one_line_week(source: Dataset) -> Dataset:
    """The first event of ``source`` alone: a table run's start-up."""
    name = f"one-line-of-{source.name}"
    path = CACHE / f"{name}.jsonl.gz"
    if (cached := _cached(path)) is not None:
        return cached
    first = next(read_lines(source.file))
    path.write_bytes(gzip.compress(first + b"\n", compresslevel=GZIP_LEVEL, mtime=0))
    return _save(_describe(path, name=name, profile="one_line", scale=source.scale))


def _bucket(key: str) -> int:
    return zlib.crc32(key.encode()) % SAMPLE_BUCKETS


def user_sample(source: Dataset, target_events: int) -> Dataset:
    """Every event of the users in the first hash buckets that hold at least ``target_events``.

    Whole users, in file order: each sampled user's first sighting, repeats and version changes
    are all there, as in the whole week. The whole week when it is smaller than the target.
    """
    if target_events >= source.events:
        return source
    name = f"{source.name}-sample{target_events}"
    path = CACHE / f"{name}.jsonl.gz"
    if (cached := _cached(path)) is not None:
        return cached
    per_bucket: Counter[int] = Counter(
        _bucket(user_key(orjson.loads(line))) for line in read_lines(source.file)
    )
    chosen, total = set(), 0
    for bucket in range(SAMPLE_BUCKETS):
        if total >= target_events:
            break
        chosen.add(bucket)
        total += per_bucket[bucket]
    partial = path.with_name(path.name + ".partial")
    with gzip.GzipFile(partial, "wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
        for line in read_lines(source.file):
            if _bucket(user_key(orjson.loads(line))) in chosen:
                out.write(line + b"\n")
    partial.rename(path)
    dataset = _describe(path, name=name, profile=source.profile, scale=source.scale)
    _log(f"{name}: {dataset.events:,} events of {dataset.users:,} users")
    return _save(dataset)


# --------------------------------------------------------------------------------------------
# a big week: tens of times a week's events and users, to show the cost per event stays flat

BIG_VERSION = 1
_AMPLITUDE_ID = re.compile(rb'"amplitude_id":(\d)')


def big_week(source: Dataset, target_bytes: int) -> Dataset:
    """A week of about ``target_bytes`` compressed: copies of ``source`` in a row, each with users
    of its own. Copy *c* (from 1) renames every user: ``"EHR-…"`` ehr_ids become ``"EHR-c<c>-…"``
    and every ``amplitude_id`` gets the digits ``9<cc>`` in front (anonymous users are keyed by
    it), so the week holds copies × the events and the users of ``source``, and every copy is
    first sightings, repeats and changes as the source week is, not a replay of loaded users.

    Written with ISA-L on two threads; its counts come from the source's (the rename keeps the
    lines), not from a second read of ~60 GB of text.
    """
    from isal import igzip_threaded

    from amplitude_pipeline.inflate import gzip_line_blocks

    copies = max(1, round(target_bytes / source.compressed_bytes))
    name = f"big-{copies}x-{source.name}-v{BIG_VERSION}"
    path = CACHE / f"{name}.jsonl.gz"
    if (cached := _cached(path)) is not None:
        return cached
    _log(f"{name}: writing {copies} renamed copies of {source.name} ({copies * source.events:,} events)")
    partial = path.with_name(path.name + ".partial")
    uncompressed = 0
    with igzip_threaded.open(partial, "wb", compresslevel=GZIP_LEVEL, threads=2) as out:
        for copy in range(copies):
            with source.file.open("rb") as stream:
                for block in gzip_line_blocks(stream):
                    text = b"\n".join(block) + b"\n"
                    if copy:
                        text = _renamed_users(text, copy)
                    uncompressed += len(text)
                    out.write(text)
    partial.rename(path)
    dataset = Dataset(
        name=name,
        profile=source.profile,
        scale=source.scale * copies,
        path=str(path),
        events=source.events * copies,
        users=source.users * copies,
        compressed_bytes=path.stat().st_size,
        uncompressed_bytes=uncompressed,
    )
    _log(
        f"{name}: {dataset.events:,} events, {dataset.users:,} users, {dataset.compressed_bytes / 1e9:.2f} GB"
    )
    return _save(dataset)


def _renamed_users(text: bytes, copy: int) -> bytes:
    text = text.replace(b'"ehr_id":"EHR-', b'"ehr_id":"EHR-c%d-' % copy)
    return _AMPLITUDE_ID.sub(b'"amplitude_id":9%02d\\1' % copy, text)
