"""Scan a JSON Lines file of Amplitude events and report everything a load would stop at.

A load stops at the first unknown key or bad value (CONTRACT §7); fixing a file one
error per run is slow. The audit reads the whole file once and aggregates every
problem by key, keeping a count, the first line and a few example values, so memory
grows with the number of distinct problem keys, never with the number of lines.

Lines are read as the loader reads them (:mod:`amplitude_pipeline.transform.json_line`: again
exactly where orjson lost a number's digits), so the audit judges every line as a load would.
Blank (whitespace-only) lines are counted in ``lines_scanned`` and otherwise skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from amplitude_pipeline.text import short_repr, shorten
from amplitude_pipeline.transform.event_lines import malformed_line_message
from amplitude_pipeline.transform.json_line import read_line, reread_lost_digits
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import (
    REASON_LIMIT,
    MalformedRecordError,
    RecordError,
    ValueConversionError,
    collect_envelope_errors,
    collect_record_errors,
)

__all__ = [
    "AuditReport",
    "ConversionFailureFinding",
    "MalformedFinding",
    "UnknownKeyFinding",
    "audit_user_properties",
]

DEFAULT_MAX_EXAMPLES: Final = 3
_KEY_LIMIT: Final = 120


@dataclass(frozen=True, slots=True)
class UnknownKeyFinding:
    """A key missing from the mapping file; ``examples`` are reprs of distinct values seen."""

    key: str
    count: int
    first_line: int
    examples: tuple[str, ...]

    @property
    def example_value(self) -> str:
        return self.examples[0]


@dataclass(frozen=True, slots=True)
class ConversionFailureFinding:
    """Values of one key that failed conversion; ``examples`` pair a value's repr with the reason."""

    key: str
    column: str
    column_type: str
    count: int
    first_line: int
    examples: tuple[tuple[str, str], ...]

    @property
    def example_value(self) -> str:
        return self.examples[0][0]

    @property
    def reason(self) -> str:
        return self.examples[0][1]


@dataclass(frozen=True, slots=True)
class MalformedFinding:
    """Lines with one kind of structural problem.

    ``problem`` is ``"json"`` (not parseable), ``"record"`` (not an object) or the
    name of the bad field (``uuid``, ``event_time``, ``amplitude_id``,
    ``user_properties``); ``message`` describes the first occurrence.
    """

    problem: str
    count: int
    first_line: int
    message: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Findings of one scan, each list in order of first occurrence. Line numbers are 0-based."""

    lines_scanned: int
    unknown_keys: tuple[UnknownKeyFinding, ...]
    conversion_failures: tuple[ConversionFailureFinding, ...]
    malformed: tuple[MalformedFinding, ...]
    malformed_lines: int = 0

    @property
    def passed(self) -> bool:
        return not (self.unknown_keys or self.conversion_failures or self.malformed)

    def summary(self, max_rows: int = 20) -> str:
        """Markdown: a headline, then one table per kind of finding (at most ``max_rows`` rows each)."""
        if self.passed:
            return (
                f"**Audit passed**: {self.lines_scanned} lines scanned; "
                "every key is mapped and every value converts."
            )
        parts = [
            f"**Audit failed**: {self.lines_scanned} lines scanned; "
            f"{len(self.unknown_keys)} unknown keys, "
            f"{len(self.conversion_failures)} keys with conversion failures, "
            f"{self.malformed_lines} malformed lines."
        ]
        if self.unknown_keys:
            parts.append(
                _table(
                    "Unknown keys (add to `ignore` or map them in field_mappings.yaml)",
                    ("key", "records", "first line", "example"),
                    [(f.key, f.count, f.first_line, f.example_value) for f in self.unknown_keys],
                    max_rows,
                )
            )
        if self.conversion_failures:
            parts.append(
                _table(
                    "Conversion failures",
                    ("key", "column", "type", "records", "first line", "example", "reason"),
                    [
                        (f.key, f.column, f.column_type, f.count, f.first_line, f.example_value, f.reason)
                        for f in self.conversion_failures
                    ],
                    max_rows,
                )
            )
        if self.malformed:
            parts.append(
                _table(
                    "Malformed lines",
                    ("problem", "lines", "first line", "message"),
                    [(f.problem, f.count, f.first_line, f.message) for f in self.malformed],
                    max_rows,
                )
            )
        return "\n\n".join(parts)


def _cell(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(title: str, header: tuple[str, ...], rows: list[tuple[object, ...]], max_rows: int) -> str:
    lines = [
        f"{title}:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"\n…and {len(rows) - max_rows} more.")
    return "\n".join(lines)


@dataclass(slots=True)
class _Tally:
    count: int
    first_line: int
    examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, example: str, reason: str, max_examples: int) -> None:
        self.count += 1
        if len(self.examples) < max_examples and all(seen != example for seen, _ in self.examples):
            self.examples.append((example, reason))


@dataclass(slots=True)
class _ConversionTally(_Tally):
    column: str = ""
    column_type: str = ""


def _problems(record: Any, mappings: FieldMappings) -> tuple[list[MalformedRecordError], list[RecordError]]:
    """What a load would refuse in ``record``: its envelope's problems, then its user_properties'."""
    envelope_errors = collect_envelope_errors(record)
    user_properties = record.get("user_properties") if isinstance(record, dict) else None
    if not isinstance(user_properties, dict):
        return envelope_errors, []
    return envelope_errors, collect_record_errors(user_properties, mappings)


RecordObserver = Callable[[dict[str, Any], int], None]
"""Called with each well-formed record (its ``user_properties`` an object) and its line index."""


def audit_user_properties(
    lines: Iterable[bytes],
    mappings: FieldMappings,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    observe_record: RecordObserver | None = None,
) -> AuditReport:
    """Check every line of a JSON Lines stream against ``mappings`` and aggregate the problems.

    ``max_examples`` bounds the distinct example values kept per key. ``observe_record`` sees
    every well-formed record of the same pass, parsed once: the mapping assistant profiles the
    keys there (``amplitude_pipeline.mapping.audit_and_propose``).
    """
    unknown: dict[str, _Tally] = {}
    failures: dict[str, _ConversionTally] = {}
    malformed: dict[str, _Tally] = {}
    malformed_lines = 0
    lines_scanned = 0

    def note_malformed(problem: str, line_index: int, message: str) -> None:
        tally = malformed.setdefault(problem, _Tally(0, line_index))
        tally.add(message, message, 1)

    for line_index, line in enumerate(lines):
        lines_scanned += 1
        if not line or line.isspace():
            continue
        try:
            record = read_line(line)
        except orjson.JSONDecodeError as json_error:
            malformed_lines += 1
            note_malformed("json", line_index, shorten(malformed_line_message(line, json_error), _KEY_LIMIT))
            continue

        envelope_errors, record_errors = _problems(record, mappings)
        if envelope_errors or record_errors:
            exact = reread_lost_digits(line, record)
            if exact is not record:
                record = exact
                envelope_errors, record_errors = _problems(exact, mappings)
        if envelope_errors:
            malformed_lines += 1
            for envelope_error in envelope_errors:
                note_malformed(envelope_error.key or "record", line_index, str(envelope_error))
        elif observe_record is not None and isinstance(record.get("user_properties"), dict):
            observe_record(record, line_index)

        for record_error in record_errors:
            # Findings are grouped by the key as shown: a hostile file's megabyte-long keys cost
            # neither memory nor a megabyte of report.
            key = shorten(record_error.key or "", _KEY_LIMIT)
            tally: _Tally
            if isinstance(record_error, ValueConversionError):
                tally = failures.setdefault(
                    key,
                    _ConversionTally(
                        0, line_index, column=record_error.column, column_type=record_error.column_type
                    ),
                )
            else:
                tally = unknown.setdefault(key, _Tally(0, line_index))
            # Reasons cut as the loader cuts them (REASON_LIMIT): the same words either way.
            tally.add(
                short_repr(record_error.value), shorten(record_error.reason, REASON_LIMIT), max_examples
            )

    return AuditReport(
        lines_scanned=lines_scanned,
        unknown_keys=tuple(
            UnknownKeyFinding(key, t.count, t.first_line, tuple(example for example, _ in t.examples))
            for key, t in unknown.items()
        ),
        conversion_failures=tuple(
            ConversionFailureFinding(key, t.column, t.column_type, t.count, t.first_line, tuple(t.examples))
            for key, t in failures.items()
        ),
        malformed=tuple(
            MalformedFinding(problem, t.count, t.first_line, t.examples[0][0])
            for problem, t in malformed.items()
        ),
        malformed_lines=malformed_lines,
    )
