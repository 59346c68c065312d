"""The benchmark of issue 10: ``bench/run.sh [--quick] [--only STAGES] [--profile]``.

Runs every measurement in a fresh process, each load into a fresh DWH schema, prints the
table and the targets' ratios with PASS/FAIL, and writes everything as JSON to
``bench/results/<run id>/results.json`` (logs, profiles and flame graphs beside it).
See ``bench/README.md`` for what each stage is and why.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import datasets, profile
from bench.dagster_cli import EXPORT_ASSET, TABLE_ASSETS, CliRun, cli_env, materialize, new_instance_home
from bench.datasets import WEEK, Dataset
from bench.measure import Measured, run_measured
from bench.report import Row, format_table, format_targets, targets

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
DLT_VENV = REPO / "bench" / ".venv-dlt"
DLT_REQUIREMENTS = REPO / "bench" / "requirements-dlt.txt"
PARTITION = WEEK.isoformat()
STAGES = ("startup", "load", "rerun", "ceiling", "naive", "dlt", "export", "raw_copy")
PROFILE = "profile"  # not in the default set: --profile, or --only profile
BIG = "big"  # not in the default set either: --only big (~40 min, ~10 GB of disk while it runs)
BIG_WEEK_BYTES = 10 * 10**9


@dataclass(frozen=True)
class Sizes:
    heavy_users: int
    heavy_events_per_day: int
    light_users: int
    naive_events: int
    dlt_events: int
    startup_repeats: int


FULL = Sizes(
    heavy_users=20_000,
    heavy_events_per_day=100_000,
    light_users=100_000,
    naive_events=20_000,
    dlt_events=100_000,
    startup_repeats=3,
)
QUICK = Sizes(
    heavy_users=1_000,
    heavy_events_per_day=5_000,
    light_users=5_000,
    naive_events=2_000,
    dlt_events=10_000,
    startup_repeats=1,
)
SCALES = (1, 4)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


class Bench:
    def __init__(self, sizes: Sizes, stages: set[str], run_id: str, keep: bool) -> None:
        self.sizes = sizes
        self.stages = stages
        self.run_id = run_id
        self.keep = keep
        self.out = RESULTS / run_id
        self.logs = self.out / "logs"
        self.env = dict(os.environ)
        self.home = new_instance_home(self.out / "dagster_home")
        self.rows: list[Row] = []
        self.startup_seconds: float | None = None
        self.data: dict[tuple[str, int], Dataset] = {}
        self.samples: dict[tuple[str, str], Dataset] = {}
        self._schemas = 0

    # -- helpers ------------------------------------------------------------------------

    def schema(self, label: str) -> str:
        self._schemas += 1
        # Single underscores only: dlt normalizes its dataset name that way, and the schema it
        # creates must be the one dropped afterwards.
        name = f"bench_{self.run_id[-6:]}_{self._schemas}_{label}".lower().replace("-", "_")
        return re.sub("_+", "_", name)[:55]

    def drop_schema(self, schema: str) -> None:
        if self.keep:
            return
        import psycopg
        from psycopg import sql

        with psycopg.connect(_dsn(), autocommit=True) as conn:
            for name in (schema, f"{schema}_staging"):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.env.get("S3_ENDPOINT_URL"), region_name=self.env.get("AWS_REGION")
        )

    def dataset_prefix(self, dataset: Dataset) -> str:
        return f"bench/data/{dataset.name}"

    def upload(self, dataset: Dataset) -> str:
        """The dataset's object (uploaded once, reused by every run): its prefix."""
        from boto3.s3.transfer import TransferConfig

        prefix = self.dataset_prefix(dataset)
        key = f"{prefix}/{PARTITION}.jsonl.gz"
        client = self.s3()
        try:
            if (
                client.head_object(Bucket=self.env["S3_BUCKET"], Key=key)["ContentLength"]
                == dataset.compressed_bytes
            ):
                return prefix
        except client.exceptions.ClientError:
            pass
        log(
            f"uploading {dataset.name} ({dataset.compressed_bytes / 2**20:.0f} MiB) to s3://{self.env['S3_BUCKET']}/{key}"
        )
        client.upload_file(
            str(dataset.file), self.env["S3_BUCKET"], key,
            Config=TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20),
        )  # fmt: skip
        return prefix

    def delete_prefix(self, prefix: str) -> None:
        if self.keep:
            return
        client = self.s3()
        listing = client.list_objects_v2(Bucket=self.env["S3_BUCKET"], Prefix=prefix)
        for item in listing.get("Contents", []):
            client.delete_object(Bucket=self.env["S3_BUCKET"], Key=item["Key"])

    def cli(self, select: str, label: str, wrap: list[str] | None = None, **overrides: str) -> CliRun:
        run = materialize(
            select,
            PARTITION,
            env=cli_env(self.env, self.home, **overrides),
            log_dir=self.logs,
            label=label,
            wrap=wrap,
        )
        if not run.ok:
            raise RuntimeError(
                f"{label}: dagster asset materialize failed (exit {run.measured.returncode}, run "
                f"{run.run_status}); see {run.measured.stderr_path}"
            )
        return run

    def stage_process(self, argv: list[str], label: str) -> tuple[Measured, dict[str, Any]]:
        measured = run_measured(argv, env=self.env, log_dir=self.logs, label=label, cwd=REPO)
        if measured.returncode != 0:
            raise RuntimeError(f"{label} failed (exit {measured.returncode}); see {measured.stderr_path}")
        return measured, json.loads(measured.stdout().strip().splitlines()[-1])

    def add(self, row: Row) -> None:
        self.rows.append(row)
        rate = f"{row.events_per_second:,.0f} events/s" if row.events_per_second else ""
        log(
            f"{row.stage} {row.profile} {row.size}: {row.seconds:.2f} s {rate}, "
            f"peak RSS {row.peak_rss_mib} MiB (total {row.peak_total_rss_mib})"
        )

    @staticmethod
    def size(scale: int) -> str:
        return f"{scale}x"

    # -- data ---------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Every week the stages read (generated once, then cached), and their S3 objects."""
        sizes = self.sizes
        for scale in SCALES:
            self.data["heavy", scale] = datasets.heavy_week(
                scale, sizes.heavy_users * scale, sizes.heavy_events_per_day * scale
            )
            self.data["light", scale] = datasets.light_week(scale, sizes.light_users * scale)
        self.data["one_line", 1] = datasets.one_line_week(self.data["heavy", 1])
        for profile_name in ("light", "heavy"):
            week = self.data[profile_name, 1]
            self.samples["naive", profile_name] = datasets.user_sample(week, sizes.naive_events)
            self.samples["dlt", profile_name] = datasets.user_sample(week, sizes.dlt_events)
        for dataset in [*self.data.values(), *self.samples.values()]:
            self.upload(dataset)

    # -- stages -------------------------------------------------------------------------

    def run_startup(self) -> None:
        one_line = self.data["one_line", 1]
        prefix = self.upload(one_line)
        walls = []
        # The first run creates the instance's SQLite storage: reported, not in the median.
        for repeat in range(self.sizes.startup_repeats + 1):
            schema = self.schema("startup")
            run = self.cli(TABLE_ASSETS, f"startup-{repeat}", S3_PREFIX=prefix, DWH_SCHEMA=schema)
            self.drop_schema(schema)
            if repeat == 0:
                log(f"start-up, first run (creates the instance): {run.measured.wall_seconds:.2f} s")
                continue
            walls.append(run.measured.wall_seconds)
            last = run
        self.startup_seconds = statistics.median(walls)
        self.add(
            Row(
                "startup", "one_line", "1x", one_line.events, self.startup_seconds, one_line.compressed_bytes,
                last.measured.peak_rss_mib, last.measured.peak_total_rss_mib, last.measured.cpu_seconds,
                last.measured.wall_seconds,
                details={"walls": walls, "run_seconds": last.run_seconds, "steps_seconds": last.steps_seconds},
                throughput=False,
            )
        )  # fmt: skip

    def run_load(self, profile_name: str, scale: int) -> None:
        self.load(self.data[profile_name, scale], scale)

    def load(self, dataset: Dataset, scale: int) -> None:
        """The week's table run (and at 1×, its rerun): the rows ``load``, ``load (CLI - start-up)``."""
        profile_name = dataset.profile
        prefix = self.upload(dataset)
        schema = self.schema(f"load_{profile_name}_{scale}x")
        run = self.cli(TABLE_ASSETS, f"load-{profile_name}-{scale}x", S3_PREFIX=prefix, DWH_SCHEMA=schema)
        phase = run.metadata("changeble_user_properties", "duration_seconds") or 0.0
        records = run.metadata("changeble_user_properties", "records_read")
        if records != dataset.events:
            raise RuntimeError(
                f"load {profile_name} {scale}x read {records} records, expected {dataset.events}"
            )
        details = {
            "dataset": dataset.name,
            "users": dataset.users,
            "schema": schema,
            "cli_wall_seconds": run.measured.wall_seconds,
            "run_seconds": run.run_seconds,
            "steps_seconds": run.steps_seconds,
            "service_cpu_seconds": run.measured.service_cpu_seconds,
            "permanent": _counts(run, "permanent_user_properties"),
            "changeable": _counts(run, "changeble_user_properties"),
        }
        measured = run.measured
        self.add(
            Row(
                "load", profile_name, self.size(scale), dataset.events, phase, dataset.compressed_bytes,
                measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds, measured.wall_seconds,
                details=details,
            )
        )  # fmt: skip
        if self.startup_seconds is not None:
            self.add(
                Row(
                    "load (CLI - start-up)", profile_name, self.size(scale), dataset.events,
                    round(measured.wall_seconds - self.startup_seconds, 3), dataset.compressed_bytes,
                    measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds,
                    measured.wall_seconds, details={"startup_seconds": self.startup_seconds},
                )
            )  # fmt: skip
        if "rerun" in self.stages and scale == 1:
            rerun = self.cli(
                TABLE_ASSETS, f"rerun-{profile_name}-{scale}x", S3_PREFIX=prefix, DWH_SCHEMA=schema
            )
            already = rerun.metadata("changeble_user_properties", "already_loaded")
            self.add(
                Row(
                    "rerun", profile_name, self.size(scale), 0, rerun.measured.wall_seconds, 0,
                    rerun.measured.peak_rss_mib, rerun.measured.peak_total_rss_mib, rerun.measured.cpu_seconds,
                    rerun.measured.wall_seconds,
                    details={"already_loaded": already, "steps_seconds": rerun.steps_seconds},
                    throughput=False,
                )
            )  # fmt: skip
        self.drop_schema(schema)

    def run_big(self) -> None:
        """Renamed copies of the heavy 4× week, ~10 GB compressed (:func:`datasets.big_week`): its
        table run, and the key check's and ``propose``'s passes over the file. The object and the
        file are deleted afterwards (unless ``--keep``): they are ~10 GB each."""
        dataset = datasets.big_week(self.data["heavy", 4], BIG_WEEK_BYTES)
        self.data["heavy", dataset.scale] = dataset
        try:
            self.load(dataset, dataset.scale)
            for stage in ("audit", "propose"):
                measured, counted = self.stage_process(
                    [str(PYTHON), "-m", "bench.mapping", "--stage", stage, dataset.path], f"big-{stage}"
                )
                if counted["events"] != dataset.events:
                    raise RuntimeError(f"{stage} of {dataset.name} counted {counted['events']} events")
                self.add(
                    Row(
                        {"audit": "key check (audit, local file)", "propose": "propose (local file)"}[stage],
                        dataset.profile, self.size(dataset.scale), dataset.events, measured.wall_seconds,
                        dataset.compressed_bytes, measured.peak_rss_mib, measured.peak_total_rss_mib,
                        measured.cpu_seconds, measured.wall_seconds, details=counted,
                    )
                )  # fmt: skip
        finally:
            if not self.keep:
                self.delete_prefix(self.dataset_prefix(dataset))
                dataset.file.unlink(missing_ok=True)
                Path(dataset.path + ".json").unlink(missing_ok=True)

    def run_ceiling(self, profile_name: str, scale: int) -> None:
        dataset = self.data[profile_name, scale]
        key = f"{self.upload(dataset)}/{PARTITION}.jsonl.gz"
        schema = self.schema(f"ceiling_{profile_name}_{scale}x")
        measured, result = self.stage_process(
            [str(PYTHON), "-m", "bench.stages", "ceiling", "--key", key, "--schema", schema],
            f"ceiling-{profile_name}-{scale}x",
        )
        self.drop_schema(schema)
        self.add(
            Row(
                "ceiling", profile_name, self.size(scale), result["events"], result["seconds"],
                dataset.compressed_bytes, measured.peak_rss_mib, measured.peak_total_rss_mib,
                measured.cpu_seconds, measured.wall_seconds,
                details={"rows": result["rows"], "service_cpu_seconds": measured.service_cpu_seconds},
            )
        )  # fmt: skip

    def run_naive(self, profile_name: str) -> None:
        sample = self.samples["naive", profile_name]
        key = f"{self.upload(sample)}/{PARTITION}.jsonl.gz"
        schema = self.schema(f"naive_{profile_name}")
        measured, result = self.stage_process(
            [str(PYTHON), "-m", "bench.stages", "naive", "--key", key, "--schema", schema],
            f"naive-{profile_name}",
        )
        self.drop_schema(schema)
        self.add(
            Row(
                "naive", profile_name, "1x", result["events"], result["seconds"], sample.compressed_bytes,
                measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds, measured.wall_seconds,
                details={**result, "sample": sample.name, "sample_users": sample.users},
            )
        )  # fmt: skip

    def run_dlt(self, profile_name: str) -> None:
        python = ensure_dlt_venv()
        sample = self.samples["dlt", profile_name]
        schema = self.schema(f"dlt_{profile_name}")
        measured, result = self.stage_process(
            [str(python), str(REPO / "bench" / "dlt_load.py"), str(sample.file), schema],
            f"dlt-{profile_name}",
        )
        self.drop_schema(schema)
        self.add(
            Row(
                "dlt", profile_name, "1x", result["events"], result["seconds"], sample.compressed_bytes,
                measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds, measured.wall_seconds,
                details={**result, "sample": sample.name, "sample_users": sample.users},
            )
        )  # fmt: skip

    def run_export(self, scale: int) -> None:
        dataset = self.data["heavy", scale]
        archives = [Path(path) for path in dataset.day_archives]
        response_bytes = sum(path.stat().st_size for path in archives)
        with _replay_server(archives) as export_url:
            if "export" in self.stages:
                prefix = f"bench/runs/{self.run_id}/export-{scale}x"
                schema = self.schema(f"export_{scale}x")
                run = self.cli(
                    EXPORT_ASSET, f"export-heavy-{scale}x", S3_PREFIX=prefix, DWH_SCHEMA=schema,
                    AMPLITUDE_EXPORT_URL=export_url,
                )  # fmt: skip
                events = run.metadata(EXPORT_ASSET, "events")
                stored = run.metadata(EXPORT_ASSET, "bytes")
                if events != dataset.events or stored != dataset.compressed_bytes:
                    raise RuntimeError(
                        f"export {scale}x wrote {events} events / {stored} bytes, expected "
                        f"{dataset.events} / {dataset.compressed_bytes} (the cached week, byte for byte)"
                    )
                measured = run.measured
                self.add(
                    Row(
                        "export", "heavy", self.size(scale), dataset.events,
                        run.metadata(EXPORT_ASSET, "duration_seconds"), response_bytes,
                        measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds,
                        measured.wall_seconds,
                        details={
                            "cli_wall_seconds": measured.wall_seconds, "run_seconds": run.run_seconds,
                            "steps_seconds": run.steps_seconds, "object_bytes": stored,
                            "checks": run.checks, "service_cpu_seconds": measured.service_cpu_seconds,
                        },
                    )
                )  # fmt: skip
                self.drop_schema(schema)
                self.delete_prefix(prefix)
            if "raw_copy" in self.stages:
                prefix = f"bench/runs/{self.run_id}/raw-{scale}x"
                self.env["AMPLITUDE_EXPORT_URL"], saved = export_url, self.env.get("AMPLITUDE_EXPORT_URL", "")
                try:
                    measured, result = self.stage_process(
                        [str(PYTHON), "-m", "bench.stages", "raw_copy", "--week", PARTITION, "--key",
                         f"{prefix}/{PARTITION}.zips"],
                        f"raw-copy-heavy-{scale}x",
                    )  # fmt: skip
                finally:
                    self.env["AMPLITUDE_EXPORT_URL"] = saved
                if result["bytes"] != response_bytes:
                    raise RuntimeError(f"raw copy moved {result['bytes']} bytes, expected {response_bytes}")
                self.add(
                    Row(
                        "raw_copy", "heavy", self.size(scale), dataset.events, result["seconds"], response_bytes,
                        measured.peak_rss_mib, measured.peak_total_rss_mib, measured.cpu_seconds,
                        measured.wall_seconds, details={"service_cpu_seconds": measured.service_cpu_seconds},
                    )
                )  # fmt: skip
                self.delete_prefix(prefix)

    def run_profile(self, data_profile: str) -> dict[str, Any]:
        """The real load of ``data_profile``'s week at 1× and 4× under py-spy."""
        py_spy = REPO / ".venv" / "bin" / "py-spy"
        if not py_spy.exists():
            raise RuntimeError("py-spy is missing: scripts/bootstrap.sh installs it (dev dependency)")
        profiled = {}
        runs: dict[str, dict[str, Any]] = {}
        for scale in SCALES:
            dataset = self.data[data_profile, scale]
            prefix = self.upload(dataset)
            schema = self.schema(f"profile_{data_profile}_{scale}x")
            collapsed = self.out / f"profile-{data_profile}-{scale}x.collapsed"
            run = self.cli(
                TABLE_ASSETS, f"profile-{data_profile}-{scale}x",
                wrap=[str(py_spy), "record", "--subprocesses", "--rate", str(profile.RATE_HZ),
                      "--format", "raw", "--output", str(collapsed), "--"],
                S3_PREFIX=prefix, DWH_SCHEMA=schema,
            )  # fmt: skip
            self.drop_schema(schema)
            stacks = profile.read_collapsed(collapsed)
            title = (
                f"{data_profile} {scale}x: {dataset.events:,} events, {dataset.users:,} users "
                f"(py-spy, {profile.RATE_HZ} Hz)"
            )
            profile.write_flame_graph(
                stacks, f"{title}, the whole run", self.out / f"profile-{data_profile}-{scale}x.svg"
            )
            profiled[scale] = (profile.load_only(stacks), dataset.events)
            profile.write_flame_graph(
                profiled[scale][0],
                f"{title}, the load proper",
                self.out / f"profile-{data_profile}-{scale}x-load.svg",
            )
            everything, loading = sum(stacks.values()), sum(profiled[scale][0].values())
            phase = run.metadata("changeble_user_properties", "duration_seconds")
            runs[f"{scale}x"] = {
                "events": dataset.events,
                "users": dataset.users,
                "samples": everything,
                "load_samples": loading,
                "cli_wall_seconds": run.measured.wall_seconds,
                "load_phase_seconds": phase,
            }
            log(
                f"profile {data_profile} {scale}x: {everything} samples, {loading} in the load proper; load phase "
                f"{phase} s under py-spy"
            )
        comparison = {"runs": runs, **profile.compare(("1x", *profiled[1]), ("4x", *profiled[4]))}
        text = f"The load proper (loop, committer and read-ahead threads), {data_profile} profile:\n" + (
            profile.format_comparison(comparison, "1x", "4x")
        )
        (self.out / f"profile-{data_profile}.txt").write_text(text + "\n")
        print(text)
        return comparison

    # -- the whole run ------------------------------------------------------------------

    def run(self, profiles: list[str], prepare_only: bool = False) -> dict[str, Any]:
        _wait_for_postgres()
        machine = machine_info()
        log(f"run {self.run_id}: {', '.join(sorted(self.stages))}; results in {self.out.relative_to(REPO)}")
        started = time.perf_counter()
        self.prepare_data()
        if prepare_only:
            shutil.rmtree(self.out, ignore_errors=True)
            log("data ready")
            return {}
        steps: list[tuple[str, Callable[[], None]]] = []
        if "startup" in self.stages:
            steps.append(("startup", self.run_startup))
        for profile_name in ("light", "heavy"):
            for scale in SCALES:
                if "load" in self.stages:
                    steps.append(
                        (f"load {profile_name} {scale}x", partial(self.run_load, profile_name, scale))
                    )
                if "ceiling" in self.stages:
                    steps.append(
                        (f"ceiling {profile_name} {scale}x", partial(self.run_ceiling, profile_name, scale))
                    )
            if "naive" in self.stages:
                steps.append((f"naive {profile_name}", partial(self.run_naive, profile_name)))
            if "dlt" in self.stages:
                steps.append((f"dlt {profile_name}", partial(self.run_dlt, profile_name)))
        if self.stages & {"export", "raw_copy"}:
            steps.extend((f"export {scale}x", partial(self.run_export, scale)) for scale in SCALES)
        if BIG in self.stages:
            steps.append(("big week", self.run_big))
        for name, step in steps:
            log(f"-- {name}")
            _wait_for_postgres()
            step()
        comparison = {name: self.run_profile(name) for name in profiles} or None
        checked = targets(self.rows, self.startup_seconds)
        machine["load_average_end"] = os.getloadavg()
        report = {
            "run_id": self.run_id,
            "command": " ".join(["bench/run.sh", *sys.argv[1:]]),
            "sizes": self.sizes.__dict__,
            "machine": machine,
            "seconds": round(time.perf_counter() - started, 1),
            "startup_seconds": self.startup_seconds,
            "datasets": {
                **{f"{name}-{scale}x": dataset.__dict__ for (name, scale), dataset in self.data.items()},
                **{
                    f"{stage}-sample-{name}": sample.__dict__
                    for (stage, name), sample in self.samples.items()
                },
            },
            "rows": [row.as_json() for row in self.rows],
            "targets": [target.as_json() for target in checked],
            "profile": comparison,
        }
        (self.out / "results.json").write_text(json.dumps(report, indent=2, default=str))
        latest = RESULTS / "latest"
        latest.unlink(missing_ok=True)
        latest.symlink_to(self.out.name)
        print()
        print(format_table(self.rows))
        print()
        print(format_targets(checked))
        print()
        print(_machine_line(machine))
        log(f"results: {(self.out / 'results.json').relative_to(REPO)} ({report['seconds']:.0f} s)")
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)
        return report


def _counts(run: CliRun, asset: str) -> dict[str, Any]:
    return {
        name: run.metadata(asset, name) for name in ("inserted", "updated", "unchanged", "dagster/row_count")
    }


def _wait_for_postgres(seconds: float = 120.0) -> None:
    """Wait until the DWH accepts connections (the machine may be shared with tests that restart it)."""
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            with psycopg.connect(_dsn(), connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            log("PostgreSQL does not accept connections yet; waiting")
            time.sleep(2)


def _dsn() -> str:
    return os.environ["DWH_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def _replay_server(archives: list[Path]) -> Iterator[str]:
    """``bench.replay`` serving ``archives``, in a process of its own: its export URL."""
    process = subprocess.Popen(
        [str(PYTHON), "-m", "bench.replay", *map(str, archives)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the replay server did not start: {line!r}")
        yield line.removeprefix("listening on ") + "/api/2/export"
    finally:
        process.terminate()
        process.wait(timeout=10)


def ensure_dlt_venv() -> Path:
    """``bench/.venv-dlt`` with ``bench/requirements-dlt.txt``, created or updated when it changes."""
    python = DLT_VENV / "bin" / "python"
    stamp = DLT_VENV / f".installed-{_digest(DLT_REQUIREMENTS.read_bytes())}"
    if python.exists() and stamp.exists():
        return python
    log("creating bench/.venv-dlt (dlt and the transform's dependencies)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(DLT_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(DLT_REQUIREMENTS)], check=True)
    for old in DLT_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return python


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    cpu_lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpu_lines if line.startswith("model name")), "")
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_start": os.getloadavg(),
    }
    try:
        import psycopg

        with psycopg.connect(_dsn()) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else None
            info["postgresql_settings"] = {
                name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                for name in ("fsync", "synchronous_commit", "shared_buffers")
            }
    except Exception as error:  # the table still prints without it
        info["postgresql"] = f"unknown ({type(error).__name__})"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    info["git"] = git("rev-parse", "--short", "HEAD") + (
        "+dirty" if git("status", "--porcelain", "-uno") else ""
    )
    from importlib.metadata import version

    info["dagster"] = version("dagster")
    return info


def _machine_line(machine: dict[str, Any]) -> str:
    load = machine["load_average_start"]
    return (
        f"machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, Python "
        f"{machine['python']}, PostgreSQL {machine.get('postgresql')}, Dagster {machine['dagster']}, "
        f"git {machine['git']}; load average at start {load[0]:.2f}"
    )


def _profiles(option: str | None, in_stages: bool) -> list[str]:
    chosen = option or ("light" if in_stages else None)
    return [] if chosen is None else ["light", "heavy"] if chosen == "both" else [chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for developing the bench")
    parser.add_argument(
        "--only",
        help=f"comma-separated stages among {','.join([*STAGES, PROFILE, BIG])} (default: all but "
        "profile and big; rerun needs load)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="light",
        choices=("light", "heavy", "both"),
        help="also profile the load of a data profile (default light) at 1x and 4x (py-spy)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the DWH schemas and S3 objects of the run")
    parser.add_argument(
        "--prepare", action="store_true", help="only generate (and upload) the data, measure nothing"
    )
    args = parser.parse_args(argv)
    stages = (
        set(STAGES)
        if args.only is None
        else {stage.strip() for stage in args.only.split(",") if stage.strip()}
    )
    unknown = stages - {*STAGES, PROFILE, BIG}
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    for variable in ("S3_BUCKET", "DWH_URL", "AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"):
        if variable not in os.environ:
            parser.error(
                f"{variable} is not set: run through bench/run.sh (it loads the local stack's environment)"
            )
    run_id = time.strftime("%Y%m%dT%H%M%S") + ("-quick" if args.quick else "")
    Bench(QUICK if args.quick else FULL, stages, run_id, args.keep).run(
        _profiles(args.profile, PROFILE in stages), args.prepare
    )
    return 0
