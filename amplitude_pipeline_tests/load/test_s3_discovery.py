"""The sweeps, watermark and requested set of ``s3_discovery``, over an in-memory bucket (no S3)."""

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from amplitude_pipeline.load.s3_discovery import (
    Discovery,
    DiscoveryCursor,
    DiscoveryLimits,
    FileGroup,
    data_order_key,
    discover,
    export_day,
    normalize_prefixes,
)
from amplitude_pipeline.storage.s3 import ListedObject, ListingPage

PREFIX = "amplitude/events/"
T0 = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Bucket:
    """A bucket as ListObjectsV2 sees it: lexical order, each page read when it is requested."""

    def __init__(self) -> None:
        self.objects: dict[str, ListedObject] = {}
        self.requests = 0
        self._versions = 0

    def put(self, key: str, at: datetime, size: int = 100, etag: str | None = None) -> ListedObject:
        self._versions += 1
        obj = ListedObject(key=key, etag=etag or f"etag-{self._versions}", size=size, last_modified=at)
        self.objects[key] = obj
        return obj

    def list_pages(self, prefix: str, *, start_after: str | None, page_size: int) -> Iterator[ListingPage]:
        after = start_after
        while True:
            self.requests += 1
            keys = sorted(k for k in self.objects if k.startswith(prefix) and (after is None or k > after))
            page = keys[:page_size]
            yield ListingPage([self.objects[k] for k in page], is_last=len(keys) <= page_size)
            if len(keys) <= page_size:
                return
            after = page[-1]


class Sensor:
    """Ticks carrying the cursor as the daemon does: through its JSON form."""

    def __init__(
        self,
        bucket: Bucket,
        limits: DiscoveryLimits,
        prefixes: tuple[str, ...] = (PREFIX,),
        finished: dict[str, str] | None = None,
    ) -> None:
        self.bucket = bucket
        self.limits = limits
        self.prefixes = prefixes
        self.finished = finished if finished is not None else {}
        self.cursor: str | None = None
        self.requested: list[tuple[str, str]] = []
        self.waiting: set[str] = set()

    def tick(self, now: datetime) -> Discovery:
        requests_before = self.bucket.requests
        found = discover(
            DiscoveryCursor.from_json(self.cursor),
            self.prefixes,
            self.bucket,
            lambda keys: {key: self.finished[key] for key in keys if key in self.finished},
            now=now,
            limits=self.limits,
            waiting=self.waiting,
        )
        assert self.bucket.requests - requests_before == found.pages_listed <= self.limits.max_pages_per_tick
        assert len(found.files) <= self.limits.max_files_per_tick
        assert len({run.prefix for run in found.runs}) == len(found.runs)
        assert all(len(run.files) <= self.limits.max_files_per_run for run in found.runs)
        self.cursor = found.cursor.to_json()
        self.requested += [(obj.key, obj.etag) for obj in found.files]
        return found

    def state(self, prefix: str = PREFIX) -> dict:
        assert self.cursor is not None
        return orjson.loads(self.cursor)["prefixes"][prefix]

    def until_sweep_completes(self, now: datetime, step: timedelta = timedelta(seconds=30)) -> datetime:
        for _ in range(1000):
            found = self.tick(now)
            now += step
            if found.sweeps_completed:
                return now
        raise AssertionError("the sweep never completed")


def limits(**overrides) -> DiscoveryLimits:
    return DiscoveryLimits(**{"page_size": 10, "max_pages_per_tick": 3, **overrides})


def test_a_sweep_requests_every_event_file_once_and_nothing_else():
    bucket = Bucket()
    event_files = [
        f"{PREFIX}2024-01-08.jsonl.gz",  # a weekly object
        f"{PREFIX}range/2024-01-01.jsonl.gz",  # export_amplitude_range output
        f"{PREFIX}187512/187512_2024-01-08_5#0.json.gz",  # Amplitude's own S3 export
        f"{PREFIX}187512/187512_2024-01-08_5#1.json.gz",
    ]
    ignored = [
        f"{PREFIX}_SUCCESS",
        f"{PREFIX}notes.csv",
        f"{PREFIX}187512/",
        f"{PREFIX}a.json",
        f"{PREFIX}b.gz",
    ]
    for key in event_files + ignored:
        bucket.put(key, T0 - 2 * HOUR)
    bucket.put("elsewhere/2024-01-08.jsonl.gz", T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits())

    first = sensor.tick(T0)
    second = sensor.tick(T0 + timedelta(minutes=1))

    assert sorted(obj.key for obj in first.files) == sorted(event_files)
    assert first.sweeps_completed == [PREFIX]
    assert (first.pages_listed, first.objects_listed) == (1, 9)
    assert second.files == []
    assert second.sweeps_completed == [PREFIX]


def test_each_tick_lists_at_most_its_pages_and_the_next_resumes_after_the_last_key():
    bucket = Bucket()
    keys = [f"{PREFIX}{i:04d}.json.gz" for i in range(250)]
    for key in keys:
        bucket.put(key, T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=3))

    per_tick: list[list[str]] = []
    requested: list[str] = []
    now = T0
    while True:
        found = sensor.tick(now)
        per_tick.append([obj.key for obj in found.files])
        requested += per_tick[-1]
        if found.sweeps_completed:
            break
        assert sensor.state()["after"] == requested[-1]
        now += timedelta(seconds=30)

    assert [len(files) for files in per_tick] == [30] * 8 + [10]
    assert requested == keys
    assert sensor.state()["after"] is None


def test_the_file_budget_ends_a_tick_mid_page_and_the_next_tick_takes_the_rest():
    bucket = Bucket()
    keys = [f"{PREFIX}{i:02d}.json.gz" for i in range(25)]
    for key in keys:
        bucket.put(key, T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=5, max_files_per_tick=7))

    ticks = [sensor.tick(T0 + timedelta(minutes=i)) for i in range(4)]

    assert [len(found.files) for found in ticks] == [7, 7, 7, 4]
    assert [obj.key for found in ticks for obj in found.files] == keys
    assert [found.pages_listed for found in ticks] == [1, 1, 1, 1]
    assert ticks[3].sweeps_completed == [PREFIX]


def test_a_key_written_behind_the_sweep_position_is_requested_by_the_next_sweep():
    bucket = Bucket()
    for i in range(40):
        bucket.put(f"{PREFIX}2024-02-{i:02d}.json.gz", T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=1))
    sensor.tick(T0)
    sensor.tick(T0 + timedelta(seconds=30))
    assert sensor.state()["after"] == f"{PREFIX}2024-02-19.json.gz"

    late = bucket.put(f"{PREFIX}2024-01-01.json.gz", T0 + timedelta(seconds=40))
    after_sweep = sensor.until_sweep_completes(T0 + timedelta(minutes=1))
    assert (late.key, late.etag) not in sensor.requested
    sensor.until_sweep_completes(after_sweep)

    assert sensor.requested.count((late.key, late.etag)) == 1
    assert len(sensor.requested) == len(set(sensor.requested)) == 41


def test_a_multipart_upload_dated_before_the_sweep_but_visible_after_it_is_found_within_the_margin():
    """S3 dates a multipart upload from its initiation: the object appears with a LastModified
    older than the sweep that missed it. The watermark stays ``upload_margin`` behind."""
    bucket = Bucket()
    bucket.put(f"{PREFIX}a.json.gz", T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits(upload_margin=HOUR))
    sensor.tick(T0)  # sweep 1: watermark T0 - 1 h
    sensor.tick(T0 + timedelta(minutes=10))  # sweep 2 starts at T0 + 10 min; watermark T0 - 50 min after it

    slow = bucket.put(
        f"{PREFIX}0-slow.json.gz", T0 - timedelta(minutes=40)
    )  # initiated ~50 min before it completed
    found = sensor.tick(T0 + timedelta(minutes=20))

    assert [obj.key for obj in found.files] == [slow.key]


def test_an_upload_longer_than_the_margin_is_missed_which_is_why_the_margin_must_cover_the_longest():
    bucket = Bucket()
    sensor = Sensor(bucket, limits(upload_margin=timedelta(minutes=5)))
    sensor.tick(T0)
    sensor.tick(T0 + timedelta(minutes=10))

    bucket.put(f"{PREFIX}slow.json.gz", T0 - timedelta(minutes=40))
    found = [sensor.tick(T0 + timedelta(minutes=20 + i)) for i in range(3)]

    assert [obj for tick in found for obj in tick.files] == []


def test_a_replaced_object_is_requested_again_and_a_requested_one_is_not():
    bucket = Bucket()
    weekly = bucket.put(f"{PREFIX}2024-01-08.jsonl.gz", T0 - timedelta(minutes=5))
    other = bucket.put(f"{PREFIX}2024-01-15.jsonl.gz", T0 - timedelta(minutes=5))
    sensor = Sensor(bucket, limits())
    sensor.tick(T0)

    replaced = bucket.put(weekly.key, T0 + timedelta(minutes=1))
    found = [sensor.tick(T0 + timedelta(minutes=2 + i)) for i in range(3)]

    assert [obj.key for obj in found[0].files] == [weekly.key]
    assert found[1].files == found[2].files == []
    assert sensor.requested == [
        (weekly.key, weekly.etag),
        (other.key, other.etag),
        (weekly.key, replaced.etag),
    ]


def test_requested_entries_stay_only_while_a_later_sweep_could_list_them():
    bucket = Bucket()
    old = bucket.put(f"{PREFIX}old.json.gz", T0 - 3 * HOUR)
    recent = bucket.put(f"{PREFIX}recent.json.gz", T0 - timedelta(minutes=10))
    sensor = Sensor(bucket, limits(upload_margin=HOUR))

    sensor.tick(T0)

    assert sensor.state() == {
        "watermark": (T0 - HOUR).isoformat(),
        "sweep_started": None,
        "after": None,
        "requested": {recent.key: [recent.etag, int(recent.last_modified.timestamp())]},
    }
    assert {key for key, _ in sensor.requested} == {old.key, recent.key}

    sensor.tick(T0 + HOUR)  # watermark T0: the recent object is behind it now
    assert sensor.state()["requested"] == {}
    sensor.tick(T0 + 2 * HOUR)
    assert len(sensor.requested) == 2


def test_finished_checkpoints_skip_their_content_so_a_lost_cursor_requests_only_the_rest():
    bucket = Bucket()
    loaded = bucket.put(f"{PREFIX}loaded.json.gz", T0 - timedelta(minutes=5))
    changed = bucket.put(f"{PREFIX}changed.json.gz", T0 - timedelta(minutes=5))
    new = bucket.put(f"{PREFIX}new.json.gz", T0 - timedelta(minutes=5))
    finished = {loaded.key: loaded.etag, changed.key: "an-older-etag"}
    sensor = Sensor(bucket, limits(), finished=finished)

    found = sensor.tick(T0)

    assert sorted(obj.key for obj in found.files) == [changed.key, new.key]
    sensor.cursor = None  # reset from the UI
    assert sorted(obj.key for obj in sensor.tick(T0 + timedelta(minutes=1)).files) == [changed.key, new.key]


def test_a_requested_entry_is_forgotten_once_its_load_has_finished():
    bucket = Bucket()
    obj = bucket.put(f"{PREFIX}file.json.gz", T0 - timedelta(minutes=5))
    sensor = Sensor(bucket, limits())
    sensor.tick(T0)
    assert list(sensor.state()["requested"]) == [obj.key]

    sensor.finished[obj.key] = obj.etag  # the run loaded it
    found = sensor.tick(T0 + timedelta(minutes=1))

    assert found.files == []
    assert sensor.state()["requested"] == {}


def test_a_new_prefix_is_swept_from_the_start_and_a_removed_one_is_forgotten():
    bucket = Bucket()
    bucket.put(f"{PREFIX}a.json.gz", T0 - 3 * HOUR)
    exports = bucket.put("exports/187512/187512_2023-12-31_23#0.json.gz", T0 - 300 * HOUR)
    sensor = Sensor(bucket, limits())
    sensor.tick(T0)

    sensor.prefixes = (PREFIX, "exports/")
    found = sensor.tick(T0 + timedelta(minutes=1))
    assert [obj.key for obj in found.files] == [exports.key]

    sensor.prefixes = ("exports/",)
    sensor.tick(T0 + timedelta(minutes=2))
    assert list(orjson.loads(sensor.cursor or "{}")["prefixes"]) == ["exports/"]


def test_a_huge_prefix_does_not_starve_another():
    bucket = Bucket()
    for i in range(500):
        bucket.put(f"big/{i:04d}.json.gz", T0 - 3 * HOUR)
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=2), prefixes=("big/", "small/"))
    sensor.tick(T0)
    sensor.tick(T0 + timedelta(seconds=30))

    small = bucket.put("small/new.json.gz", T0 + timedelta(minutes=1))
    found = [sensor.tick(T0 + timedelta(minutes=2, seconds=30 * i)) for i in range(2)]

    assert [obj.key for tick in found for obj in tick.files if obj.key.startswith("small/")] == [small.key]


def test_the_cursor_round_trips_and_an_unreadable_one_starts_over():
    bucket = Bucket()
    bucket.put(f"{PREFIX}a.json.gz", T0)
    sensor = Sensor(bucket, limits())
    sensor.tick(T0)
    assert sensor.cursor is not None

    assert DiscoveryCursor.from_json(sensor.cursor).to_json() == sensor.cursor
    for unreadable in ("not json", '{"v": 99, "prefixes": {}}', '{"v": 1, "prefixes": {"a/": {}}}'):
        assert DiscoveryCursor.from_json(unreadable) == DiscoveryCursor()


def test_watched_prefixes_are_directories_listed_once():
    assert normalize_prefixes(["amplitude/events"]) == ("amplitude/events/",)
    assert normalize_prefixes([" /a/b/ ", "a/b", "a/b/c", "x", ""]) == ("a/b/", "x/")
    assert normalize_prefixes(["a", "/"]) == ("",)
    assert normalize_prefixes([" ", ""]) == ()


def obj(name: str, size: int, etag: str = "e") -> ListedObject:
    return ListedObject(key=name, etag=etag, size=size, last_modified=T0)


def test_a_tick_requests_one_run_per_prefix_of_at_most_its_files_and_bytes_and_a_large_file_alone():
    bucket = Bucket()
    for name, size in [("1a", 10), ("2b", 10), ("3c", 10), ("4huge", 1000), ("5d", 10), ("6e", 85)]:
        bucket.put(f"{PREFIX}{name}.json.gz", T0 - 2 * HOUR, size=size)
    sensor = Sensor(bucket, limits(max_files_per_run=2, max_bytes_per_run=100))

    ticks = [sensor.tick(T0 + timedelta(minutes=i)) for i in range(5)]

    assert [[obj.key.removeprefix(PREFIX) for obj in tick.files] for tick in ticks] == [
        ["1a.json.gz", "2b.json.gz"],
        ["3c.json.gz"],
        ["4huge.json.gz"],
        ["5d.json.gz", "6e.json.gz"],
        [],
    ]
    assert [[run.total_bytes for run in tick.runs] for tick in ticks] == [[20], [10], [1000], [95], []]


def test_a_run_key_names_the_contents_whatever_their_order():
    a, b = obj("a", 1, "e1"), obj("b", 1, "e2")

    forward = FileGroup(PREFIX, (a, b))
    backward = FileGroup(PREFIX, (b, a))
    replaced = FileGroup(PREFIX, (a, obj("b", 1, "e3")))

    assert forward.run_key == backward.run_key
    assert forward.run_key != replaced.run_key


def export_file(day: str, hour: int, part: int = 0, directory: str = f"{PREFIX}187512/") -> str:
    return f"{directory}187512_{day}_{hour}#{part}.json.gz"


def test_files_sort_in_the_order_of_their_data():
    in_data_order = [
        "exports/187512/187512_2023-12-31_23#0.json.gz",
        "exports/187512/187512_2024-01-08_0#0.json.gz",
        "exports/187512/187512_2024-01-08_2#0.json.gz",
        "exports/187512/187512_2024-01-08_2#1.json.gz",
        "exports/187512/187512_2024-01-08_2#2.json.gz",
        "exports/187512/187512_2024-01-08_2#10.json.gz",
        "exports/187512/187512_2024-01-08_10#0.json.gz",
        "exports/187512/187512_2024-01-08_23#0.json.gz",
        "exports/187512/187512_2024-01-09_1#0.json.gz",
        "exports/187512/187512_2024-01-09_1#0.jsonl.gz",
        "exports/187512/notes.json.gz",
        "exports/200000/200000_2024-01-08_9#0.json.gz",
        "exports/200000/200000_2024-01-08_12#0.json.gz",
        "exports/2024-01-08.jsonl.gz",
        "exports/eu/187512/187512_2024-01-08_3#0.json.gz",
        "exports/eu/187512/187512_2024-01-08_11#0.json.gz",
        "weekly/2024-01-01.jsonl.gz",
        "weekly/2024-01-08.jsonl.gz",
        "weekly/range/2024-01-03.jsonl.gz",
    ]
    shuffled = list(in_data_order)
    random.Random(15).shuffle(shuffled)

    assert sorted(shuffled, key=data_order_key) == in_data_order
    assert sorted(in_data_order) != in_data_order  # S3's order is not the data's
    assert export_day("exports/187512/187512_2024-01-08_10#0.json.gz") == "exports/187512/187512_2024-01-08_"
    assert export_day("187512_2024-01-08_10#1.json.gz") == "187512_2024-01-08_"
    for other in (
        "exports/2024-01-08.jsonl.gz",
        "exports/187512/187512_2024-01-08_10.json.gz",
        "x_1#0.json.gz",
    ):
        assert export_day(other) is None


def hourly_day(bucket: Bucket, day: str, parts: int = 1) -> list[str]:
    """One export day, put in S3's order; its keys in data order."""
    keys = [export_file(day, hour, part) for hour in range(24) for part in range(parts)]
    for key in sorted(keys):
        bucket.put(key, T0 - 2 * HOUR)
    return keys


def test_a_tick_that_lists_part_of_a_day_leaves_it_whole_to_the_next_tick():
    bucket = Bucket()
    first_day, second_day = hourly_day(bucket, "2024-01-08"), hourly_day(bucket, "2024-01-09")
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=4))  # 40 keys: a day and a half

    first = sensor.tick(T0)
    assert [obj.key for obj in first.files] == first_day
    assert sensor.state()["after"] == max(first_day)  # not within the second day
    second = sensor.tick(T0 + timedelta(seconds=30))
    assert [obj.key for obj in second.files] == second_day
    assert second.sweeps_completed == [PREFIX]


def test_runs_smaller_than_a_day_take_it_in_order_and_the_next_tick_continues_it():
    bucket = Bucket()
    days = hourly_day(bucket, "2024-01-08", parts=2) + hourly_day(bucket, "2024-01-09", parts=2)
    bucket.put(f"{PREFIX}2024-01-08.jsonl.gz", T0 - 2 * HOUR)  # a weekly object after them
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=6, max_files_per_run=20))

    per_tick = []
    for i in range(20):
        found = sensor.tick(T0 + timedelta(seconds=30 * i))
        per_tick.append([obj.key for obj in found.files])
        if found.sweeps_completed:
            break

    assert [key for key, _ in sensor.requested] == [*days, f"{PREFIX}2024-01-08.jsonl.gz"]
    assert [len(keys) for keys in per_tick] == [20, 20, 8, 20, 20, 9]
    assert sensor.state()["requested"] == {}  # the sweep completed; nothing left to remember


@pytest.mark.parametrize(
    "files_per_run, per_tick", [(100, [20, 20, 20, 13]), (7, [7, 7, 6, 7, 7, 6, 7, 7, 6, 7, 6])]
)
def test_a_day_larger_than_a_tick_can_list_loads_part_by_part_without_stalling(files_per_run, per_tick):
    bucket = Bucket()
    day = hourly_day(bucket, "2024-01-08", parts=3)  # 72 keys
    later = bucket.put(f"{PREFIX}zz.json.gz", T0 - 2 * HOUR)
    # 20 keys a tick: each lists part of the day only.
    sensor = Sensor(bucket, limits(page_size=10, max_pages_per_tick=2, max_files_per_run=files_per_run))

    ticks = []
    for i in range(20):
        ticks.append(sensor.tick(T0 + timedelta(seconds=30 * i)))
        if ticks[-1].sweeps_completed:
            break

    requested = [key for key, _ in sensor.requested]
    assert sorted(requested) == sorted([*day, later.key])
    assert len(requested) == len(set(requested))
    for tick in ticks:
        assert [obj.key for obj in tick.files] == sorted((obj.key for obj in tick.files), key=data_order_key)
    assert "S3_WATCH_MAX_PAGES_PER_TICK" in ticks[0].warnings[0]
    assert [len(tick.files) for tick in ticks] == per_tick


def test_a_waiting_prefix_is_not_listed_and_keeps_its_place_while_the_others_go_on():
    bucket = Bucket()
    waiting = [bucket.put(f"a/{i}.json.gz", T0 - 2 * HOUR).key for i in range(3)]
    other = bucket.put("b/1.json.gz", T0 - 2 * HOUR)
    sensor = Sensor(bucket, limits(max_files_per_run=2), prefixes=("a/", "b/"))
    assert [obj.key for obj in sensor.tick(T0).files] == [*waiting[:2], other.key]
    state = sensor.state("a/")
    sensor.waiting = {"a/"}

    newer = bucket.put("b/2.json.gz", T0 + timedelta(seconds=30))
    found = [sensor.tick(T0 + timedelta(minutes=1 + i)) for i in range(2)]

    assert [[obj.key for obj in tick.files] for tick in found] == [[newer.key], []]
    assert sensor.state("a/") == state
    sensor.waiting = set()
    assert [obj.key for obj in sensor.tick(T0 + timedelta(minutes=5)).files] == waiting[2:]


@pytest.mark.parametrize(
    "bad",
    [{"page_size": 1001}, {"max_pages_per_tick": 0}, {"max_bytes_per_run": 0}, {"upload_margin": -HOUR}],
)
def test_limits_refuse_what_cannot_work(bad):
    with pytest.raises(ValueError):
        DiscoveryLimits(**bad)
