"""Throughput of the S3 → DWH load of one week, and of its parts, on the local stack.

    scripts/stack.sh start && set -a && source .local/stack/stack.env && set +a
    .venv/bin/python bench/bench_load.py [--events 700000] [--users 20000]

The week is the simulator's (realistic Amplitude events of ~1.8 KB, each user carrying 1–3
versions of their properties through many events), cached under bench/.cache. Each stage
runs in a fresh process so its peak RSS is its own:

- ``parse``: gunzip + orjson of every line (the floor of any loader);
- ``transform``: + transform_single_record (with the per-user memo) + per-user reduction;
- ``load``: the real ``load_event_file`` from SeaweedFS into a fresh PostgreSQL schema.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / ".cache"
RESULTS = REPO / "bench" / "results"
WEEK = date(2024, 1, 8)


def week_file(events: int, users: int) -> Path:
    from amplitude_simulator.data import SimulatorConfig, expected_lines

    path = CACHE / f"week-{events}-{users}.jsonl.gz"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    config = SimulatorConfig(users=users, events_per_day=events // 7)
    partial = path.with_suffix(".partial")
    with gzip.open(partial, "wb", compresslevel=6) as out:
        for offset in range(7):
            for line in expected_lines(config, WEEK + timedelta(days=offset)):
                out.write(line + b"\n")
    partial.rename(path)
    return path


def stage_parse(path: Path) -> int:
    from amplitude_pipeline.storage.s3 import iter_gzip_lines

    count = 0
    with path.open("rb") as raw:
        for line in iter_gzip_lines(raw):
            orjson.loads(line)
            count += 1
    return count


def stage_transform(path: Path, batch_size: int) -> int:
    from amplitude_pipeline.storage.s3 import iter_gzip_lines
    from amplitude_pipeline.transform.batch import ReducedBatch
    from amplitude_pipeline.transform.mapping import load_field_mappings
    from amplitude_pipeline.transform.records import UserPropertiesMemo, transform_single_record

    mappings = load_field_mappings(REPO / "field_mappings.yaml")
    memo = UserPropertiesMemo()
    batch = ReducedBatch()
    count = 0
    with path.open("rb") as raw:
        for index, line in enumerate(iter_gzip_lines(raw)):
            batch.add(transform_single_record(orjson.loads(line), mappings, memo), index)
            count += 1
            if count % batch_size == 0:
                batch = ReducedBatch()
    return count


def stage_load(path: Path, batch_size: int) -> int:
    from dagster_aws.s3 import S3Resource
    from sqlalchemy import text

    from amplitude_pipeline.load.event_files import load_event_file
    from amplitude_pipeline.storage.dwh import DWHRepository
    from amplitude_pipeline.storage.s3 import RawEventStore

    store = RawEventStore(
        bucket=os.environ["S3_BUCKET"],
        prefix="bench/events",
        s3=S3Resource(
            endpoint_url=os.environ.get("S3_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION")
        ),
    )
    key = f"bench/events/{path.name}"
    if store.stat(key) is None or store.stat(key).size != path.stat().st_size:  # type: ignore[union-attr]
        store.upload(path, key)
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    dwh = DWHRepository(
        url=os.environ["DWH_URL"], db_schema=schema, field_mappings_path=str(REPO / "field_mappings.yaml")
    )
    dwh.ensure_schema()
    try:
        started = time.perf_counter()
        result = load_event_file(dwh, store, key, batch_size=batch_size)
        elapsed = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "rows_permanent": dwh.count_rows(dwh.tables.permanent),
                    "rows_changeable": dwh.count_rows(dwh.tables.changeable),
                    "load_seconds_without_setup": round(elapsed, 3),
                }
            ),
            file=sys.stderr,
        )
        return result.records
    finally:
        with dwh.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        dwh.engine.dispose()


def _peak_rss_kib() -> int:
    """This process's own high-water mark (ru_maxrss would carry the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_stage(stage: str, path: Path, batch_size: int) -> dict[str, float]:
    import amplitude_pipeline.load.event_files  # noqa: F401  (imports are not the load's time)

    started = time.perf_counter()
    if stage == "parse":
        events = stage_parse(path)
    elif stage == "transform":
        events = stage_transform(path, batch_size)
    else:
        events = stage_load(path, batch_size)
    seconds = time.perf_counter() - started
    peak_mib = _peak_rss_kib() / 1024
    return {
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_second": round(events / seconds),
        "peak_rss_mib": round(peak_mib, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=700_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100_000, help="the loader's default")
    parser.add_argument("--stages", default="parse,transform,load")
    parser.add_argument("--run-stage", help=argparse.SUPPRESS)
    args = parser.parse_args()

    path = week_file(args.events, args.users)
    if args.run_stage:
        print(json.dumps(run_stage(args.run_stage, path, args.batch_size)))
        return

    print(f"week file: {path.name}, {path.stat().st_size / 2**20:.1f} MiB gzip")
    report = {"events": args.events, "users": args.users, "batch_size": args.batch_size, "stages": {}}
    for stage in args.stages.split(","):
        completed = subprocess.run(
            [sys.executable, __file__, "--events", str(args.events), "--users", str(args.users),
             "--batch-size", str(args.batch_size), "--run-stage", stage],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        measured = json.loads(completed.stdout.strip().splitlines()[-1])
        report["stages"][stage] = measured
        details = [line for line in completed.stderr.splitlines() if line.startswith("{")]
        extra = details[-1] if details else ""
        print(
            f"{stage:>10}: {measured['events_per_second']:>9,} events/s  "
            f"{measured['seconds']:>7.2f} s  peak RSS {measured['peak_rss_mib']:>7.1f} MiB  {extra}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"load-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
