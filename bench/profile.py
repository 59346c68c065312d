"""Where the real load's time goes, and how its cost per event grows with the users.

The table run (the same CLI command as the load stage) runs under ``py-spy record
--subprocesses`` (Dagster runs the step in a process of its own), sampling at 100 Hz. The raw
(collapsed) stacks are kept, drawn as a flame graph (SVG, drawn here: py-spy writes one format
per run), and summed per function: inclusive and self samples, turned into microseconds per
event. Comparing two sizes of one profile shows which functions' cost per event grows.
py-spy sees only Python's CPU time (idle threads are left out): PostgreSQL's own work is not
in it.
"""

from __future__ import annotations

import html
import re
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RATE_HZ = 100
_LINE_NUMBER = re.compile(r":\d+\)$")


@dataclass
class FunctionCost:
    name: str
    inclusive_samples: int
    self_samples: int


def read_collapsed(path: Path) -> Counter[tuple[str, ...]]:
    """``frame;frame;... count`` lines into stacks (root first) and their sample counts.

    py-spy's process frames (``process PID:"command line"``) may hold ``;`` inside their quotes.
    """
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames: list[str] = []
        for piece in stack.split(";"):
            if frames and frames[-1].count('"') % 2 == 1:
                frames[-1] += ";" + piece
            else:
                frames.append(piece)
        stacks[tuple(frames)] += int(count)
    return stacks


def function_name(frame: str) -> str:
    """A frame without its line number: ``load_event_file (amplitude_pipeline/load/event_files.py)``;
    a process frame as what the process is."""
    if frame.startswith("process "):
        if "multiprocessing.spawn" in frame:
            return "process: Dagster step (multiprocessing child)"
        if "resource_tracker" in frame:
            return "process: multiprocessing resource tracker"
        if "dagster asset materialize" in frame:
            return "process: dagster asset materialize (CLI)"
        return "process: " + frame.split(":", 1)[-1].strip('"')[:60]
    frame = _LINE_NUMBER.sub(")", frame)
    return frame.replace(str(Path(__file__).resolve().parent.parent) + "/", "").replace(
        "/.venv/lib/python3.11/site-packages/", "/"
    )


# The load proper: the loader's loop, its batch committer thread, its read-ahead thread.
LOAD_FRAMES = (
    ("load_event_file", "amplitude_pipeline/load/event_files.py"),
    ("_BatchCommitter._run", "amplitude_pipeline/load/event_files.py"),
    ("_read_ahead.<locals>.produce", "amplitude_pipeline/storage/objects.py"),
)


def _is_load_frame(frame: str) -> bool:
    function, _, where = function_name(frame).partition(" (")
    return any(function == name and where.rstrip(")").endswith(path) for name, path in LOAD_FRAMES)


def load_only(stacks: Mapping[tuple[str, ...], int]) -> Counter[tuple[str, ...]]:
    """The stacks of the load proper (see ``LOAD_FRAMES``), without the run's start-up."""
    kept: Counter[tuple[str, ...]] = Counter()
    for stack, count in stacks.items():
        if any(_is_load_frame(frame) for frame in stack):
            kept[stack] = count
    return kept


def function_costs(stacks: Mapping[tuple[str, ...], int]) -> dict[str, FunctionCost]:
    costs: dict[str, FunctionCost] = {}
    for stack, count in stacks.items():
        names = [function_name(frame) for frame in stack]
        for name in set(names):
            cost = costs.setdefault(name, FunctionCost(name, 0, 0))
            cost.inclusive_samples += count
        leaf = costs.setdefault(names[-1], FunctionCost(names[-1], 0, 0))
        leaf.self_samples += count
    return costs


_PLUMBING = (
    "(dagster/",
    "(multiprocessing/",
    "(threading.py)",
    "(click/",
    "(dagster)",
    "(<string>)",
    "(tenacity/",
    "(contextlib.py)",
)


def _is_plumbing(name: str) -> bool:
    """Processes, threads and the frames every stack passes through (Dagster's step machinery)."""
    return (
        name.startswith("process") or name in ("<module>", "all") or any(part in name for part in _PLUMBING)
    )


def compare(
    small: tuple[str, Mapping[tuple[str, ...], int], int],
    large: tuple[str, Mapping[tuple[str, ...], int], int],
    top: int = 25,
) -> dict[str, Any]:
    """Per-event cost (µs, inclusive and self) of each function at two sizes, and its growth.

    ``small``/``large`` are (label, stacks, events). Functions are ranked by their inclusive
    cost per event at the larger size; ``self_growth`` ranks what grows by itself.
    """
    (small_label, small_stacks, small_events), (large_label, large_stacks, large_events) = small, large
    small_costs, large_costs = function_costs(small_stacks), function_costs(large_stacks)

    def per_event(samples: int, events: int) -> float:
        return samples / RATE_HZ / events * 1e6 if events else 0.0

    rows: list[dict[str, Any]] = []
    for name in set(small_costs) | set(large_costs):
        if _is_plumbing(name):
            continue
        a = small_costs.get(name, FunctionCost(name, 0, 0))
        b = large_costs.get(name, FunctionCost(name, 0, 0))
        rows.append(
            {
                "function": name,
                f"inclusive_us_per_event_{small_label}": round(
                    per_event(a.inclusive_samples, small_events), 2
                ),
                f"inclusive_us_per_event_{large_label}": round(
                    per_event(b.inclusive_samples, large_events), 2
                ),
                f"self_us_per_event_{small_label}": round(per_event(a.self_samples, small_events), 2),
                f"self_us_per_event_{large_label}": round(per_event(b.self_samples, large_events), 2),
                "self_growth_us_per_event": round(
                    per_event(b.self_samples, large_events) - per_event(a.self_samples, small_events), 2
                ),
            }
        )
    total_small = per_event(sum(small_stacks.values()), small_events)
    total_large = per_event(sum(large_stacks.values()), large_events)
    by_inclusive = sorted(rows, key=lambda row: -row[f"inclusive_us_per_event_{large_label}"])[:top]
    by_self = sorted(rows, key=lambda row: -row[f"self_us_per_event_{large_label}"])[:top]
    by_growth = sorted(rows, key=lambda row: -row["self_growth_us_per_event"])[:top]
    return {
        "sampled_us_per_event": {small_label: round(total_small, 2), large_label: round(total_large, 2)},
        "top_inclusive": by_inclusive,
        "top_self": by_self,
        "top_self_growth": by_growth,
    }


def format_comparison(comparison: Mapping[str, Any], small_label: str, large_label: str) -> str:
    totals = comparison["sampled_us_per_event"]
    out = [
        f"sampled Python CPU per event: {small_label} {totals[small_label]:.1f} µs, "
        f"{large_label} {totals[large_label]:.1f} µs",
    ]
    for title, key, column in (
        ("self time per event (µs), largest at " + large_label, "top_self", "self"),
        ("self time growth per event (µs), " + small_label + " -> " + large_label, "top_self_growth", "self"),
        ("inclusive time per event (µs), largest at " + large_label, "top_inclusive", "inclusive"),
    ):
        out.append("")
        out.append(title)
        for row in comparison[key]:
            a = row[f"{column}_us_per_event_{small_label}"]
            b = row[f"{column}_us_per_event_{large_label}"]
            out.append(f"  {a:8.2f} {b:8.2f}  {row['function']}")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# flame graph


def _tree(stacks: Mapping[tuple[str, ...], int]) -> dict[str, Any]:
    root: dict[str, Any] = {"name": "all", "value": 0, "children": {}}
    for stack, count in stacks.items():
        node = root
        node["value"] += count
        for frame in stack:
            name = function_name(frame)
            node = node["children"].setdefault(name, {"name": name, "value": 0, "children": {}})
            node["value"] += count
    return root


def _color(name: str) -> str:
    digest = zlib.crc32(name.encode())
    return f"rgb({205 + digest % 50},{(digest >> 8) % 180 + 40},{(digest >> 16) % 50})"


def flame_graph_svg(stacks: Mapping[tuple[str, ...], int], title: str, width: int = 1600) -> str:
    """A flame graph (root at the bottom) with a tooltip per frame: samples and share."""
    root = _tree(stacks)
    total = max(root["value"], 1)
    row_height, top_margin = 16, 30

    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(child) for child in node["children"].values()), default=0)

    height = depth(root) * row_height + top_margin + 10
    scale = (width - 20) / total
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fdfdf6"/>',
        f'<text x="10" y="20" font-size="14">{html.escape(title)}</text>',
    ]

    def draw(node: dict[str, Any], x: float, level: int) -> None:
        node_width = node["value"] * scale
        if node_width < 0.3:
            return
        y = height - 10 - (level + 1) * row_height
        share = 100 * node["value"] / total
        label = html.escape(node["name"])
        parts.append(
            f"<g><title>{label} ({node['value']} samples, {share:.2f}%)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{node_width:.1f}" height="{row_height - 1}" '
            f'fill="{_color(node["name"])}"/>'
        )
        characters = int(node_width / 7)
        if characters >= 4:
            text = node["name"] if len(node["name"]) <= characters else node["name"][: characters - 2] + ".."
            parts.append(f'<text x="{x + 2:.1f}" y="{y + 11}">{html.escape(text)}</text>')
        parts.append("</g>")
        child_x = x
        for child in sorted(node["children"].values(), key=lambda child: child["name"]):
            draw(child, child_x, level + 1)
            child_x += child["value"] * scale

    draw(root, 10.0, 0)
    parts.append("</svg>")
    return "\n".join(parts)


def write_flame_graph(stacks: Mapping[tuple[str, ...], int], title: str, path: Path) -> None:
    path.write_text(flame_graph_svg(stacks, title))
