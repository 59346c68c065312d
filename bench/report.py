"""The benchmark's table, the ratios issue 10 names, and PASS/FAIL against its targets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass
class Row:
    """One measured stage."""

    stage: str
    profile: str
    size: str
    events: int
    seconds: float
    input_bytes: int
    peak_rss_mib: float | None = None
    peak_total_rss_mib: float | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    throughput: bool = True
    """False for the stages timed as a whole (start-up, rerun): no events/s or MB/s."""

    @property
    def events_per_second(self) -> float | None:
        return self.events / self.seconds if self.throughput and self.seconds > 0 and self.events else None

    @property
    def mb_per_second(self) -> float | None:
        if not (self.throughput and self.seconds > 0 and self.input_bytes):
            return None
        return self.input_bytes / MIB / self.seconds

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["events_per_second"] = _round(self.events_per_second)
        data["mb_per_second"] = _round(self.mb_per_second, 2)
        return data


@dataclass
class Target:
    name: str
    value: float | None
    threshold: float
    at_least: bool
    """True: the value must be >= threshold; False: it must be <= threshold."""

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def _round(value: float | None, digits: int = 0) -> float | None:
    if value is None:
        return None
    return round(value, digits) if digits else float(round(value))


def find(rows: Iterable[Row], stage: str, profile: str, size: str) -> Row | None:
    return next((row for row in rows if (row.stage, row.profile, row.size) == (stage, profile, size)), None)


def _rate(row: Row | None) -> float | None:
    return None if row is None else row.events_per_second


def _rss(row: Row | None) -> float | None:
    return None if row is None else row.peak_rss_mib


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def targets(rows: Sequence[Row], startup_seconds: float | None) -> list[Target]:
    """Issue 10's targets, from the measured rows (a missing stage gives ``n/a``)."""
    out: list[Target] = []
    for profile in ("light", "heavy"):
        for size in ("1x", "4x"):
            load, ceiling = find(rows, "load", profile, size), find(rows, "ceiling", profile, size)
            out.append(
                Target(
                    f"load / ceiling, {profile} {size}",
                    _ratio(_rate(load), _rate(ceiling)),
                    0.5,
                    at_least=True,
                )
            )
    for baseline, threshold in (("naive", 30.0), ("dlt", 3.0)):
        for profile in ("light", "heavy"):
            load, other = find(rows, "load", profile, "1x"), find(rows, baseline, profile, "1x")
            out.append(
                Target(
                    f"load / {baseline}, {profile}",
                    _ratio(_rate(load), _rate(other)),
                    threshold,
                    at_least=True,
                )
            )
    for stage in ("load", "export"):
        for profile in ("light", "heavy"):
            small, large = find(rows, stage, profile, "1x"), find(rows, stage, profile, "4x")
            if small is None and large is None:
                continue
            for size, row in (("1x", small), ("4x", large)):
                out.append(
                    Target(
                        f"{stage} peak RSS MiB, {profile} {size}",
                        _rss(row),
                        400.0,
                        at_least=False,
                    )
                )
            out.append(
                Target(
                    f"{stage} peak RSS 4x/1x, {profile}",
                    _ratio(_rss(large), _rss(small)),
                    1.2,
                    at_least=False,
                )
            )
    for size in ("1x", "4x"):
        export, raw = find(rows, "export", "heavy", size), find(rows, "raw_copy", "heavy", size)
        out.append(
            Target(
                f"export / raw copy, heavy {size}",
                _ratio(_rate(export), _rate(raw)),
                0.6,
                at_least=True,
            )
        )
    out.append(Target("table-run start-up seconds", startup_seconds, 3.0, at_least=False))
    return out


def _cell(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def format_table(rows: Sequence[Row]) -> str:
    header = (
        "stage", "profile", "size", "events", "seconds", "events/s", "MB/s", "peak RSS MiB", "total RSS MiB",
        "CPU s", "wall s",
    )  # fmt: skip
    lines = [
        (
            row.stage,
            row.profile,
            row.size,
            _cell(row.events),
            _cell(row.seconds, 2),
            _cell(row.events_per_second),
            _cell(row.mb_per_second, 1),
            _cell(row.peak_rss_mib),
            _cell(row.peak_total_rss_mib),
            _cell(row.cpu_seconds, 1),
            _cell(row.wall_seconds, 1),
        )
        for row in rows
    ]
    return _columns([header, *lines], right_from=3)


def format_targets(items: Sequence[Target]) -> str:
    header = ("target", "value", "wanted", "verdict")
    lines = [
        (
            item.name,
            _cell(item.value, 2),
            f"{'>=' if item.at_least else '<='} {item.threshold:g}",
            item.verdict,
        )
        for item in items
    ]
    return _columns([header, *lines], right_from=1)


def _columns(table: Sequence[Sequence[str]], right_from: int) -> str:
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    out = []
    for number, line in enumerate(table):
        cells = [
            cell.rjust(width) if column >= right_from else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
