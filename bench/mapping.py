"""The mapping assistant against the key check, on the benchmark's weeks (no services needed).

``python -m bench.mapping [DATASET...]`` (from the repository root; DATASET is a cached week's
file under ``bench/.cache``, by default every ``*.jsonl.gz`` there) runs, each in a fresh process
measured by ``bench/measure.py`` (wall time, peak RSS), over the same local file:

- ``audit``: the key check's pass, ``audit_user_properties`` with the shipped mapping;
- ``propose``: ``propose --identity ehr_id``'s pass (parse, record checks, profile) and its YAML;
- ``audit+propose``: ``audit_and_propose``, the check's pass that also yields the snippet;
- ``parse``: reading and ``orjson.loads`` alone, the floor under all three.

It prints one line per stage with events/s, CPU seconds (user + system: steadier than wall time
on a shared machine) and peak RSS, and the ratios of the wall times to the audit's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from bench.measure import run_measured

REPO = Path(__file__).resolve().parent.parent
STAGES = ("parse", "audit", "propose", "audit+propose")


def run_stage(stage: str, path: str) -> dict[str, object]:
    """One stage in this process; what it counted."""
    import orjson

    from amplitude_pipeline.mapping import audit_and_propose
    from amplitude_pipeline.mapping.assistant import propose
    from amplitude_pipeline.mapping.render import render_proposal
    from amplitude_pipeline.mapping.sources import Source
    from amplitude_pipeline.storage.s3 import iter_gzip_lines
    from amplitude_pipeline.transform.audit import audit_user_properties
    from amplitude_pipeline.transform.mapping import load_field_mappings

    mappings = load_field_mappings(REPO / "field_mappings.yaml")
    if stage == "propose":
        proposal = propose([Source(path, path=Path(path))], lambda: None, "ehr_id")
        render_proposal(proposal.profile, [path])
        return {"events": proposal.profile.records, "users_followed": proposal.profile.users_followed}
    with open(path, "rb") as stream:
        lines = iter_gzip_lines(stream)
        if stage == "parse":
            events = sum(1 for line in lines if orjson.loads(line) is not None)
            return {"events": events}
        if stage == "audit":
            return {"events": audit_user_properties(lines, mappings).lines_scanned}
        report, snippet = audit_and_propose(lines, mappings, path)
        return {"events": report.lines_scanned, "snippet_lines": len(snippet.splitlines())}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--stage"]:
        print(json.dumps(run_stage(argv[1], argv[2])))
        return 0
    files = [Path(name) for name in argv] or sorted((REPO / "bench" / ".cache").glob("*.jsonl.gz"))
    logs = Path(tempfile.mkdtemp(prefix="bench-mapping-"))
    for path in files:
        seconds: dict[str, float] = {}
        for stage in STAGES:
            measured = run_measured(
                [sys.executable, "-m", "bench.mapping", "--stage", stage, str(path)],
                env=os.environ,
                log_dir=logs,
                label=f"{path.stem}-{stage}",
                cwd=REPO,
            )
            if measured.returncode != 0:
                print(f"{path.name} {stage}: failed, see {measured.stderr_path}", file=sys.stderr)
                return 1
            counted = json.loads(measured.stdout().strip().splitlines()[-1])
            seconds[stage] = measured.wall_seconds
            print(
                f"{path.name:40} {stage:14} {counted['events']:>10,} events {measured.wall_seconds:8.1f} s "
                f"{counted['events'] / measured.wall_seconds:>9,.0f} events/s  CPU {measured.cpu_seconds:6.1f} s  "
                f"peak RSS {measured.peak_rss_mib:6.0f} MiB",
                flush=True,
            )
        print(
            f"{path.name:40} propose / audit time {seconds['propose'] / seconds['audit']:.2f}, "
            f"audit+propose / audit {seconds['audit+propose'] / seconds['audit']:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
