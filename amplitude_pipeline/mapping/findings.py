"""What stops a load, gathered over several sources: per key, per kind of damaged line.

The key check's audit (:func:`~amplitude_pipeline.transform.audit.audit_user_properties`) judges
one file; ``validate`` and ``propose --against`` judge several, so the audit's findings are
merged here: counts add up, the first file and line is the earliest in argument order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Final

from botocore.exceptions import BotoCoreError, ClientError

from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.text import short_repr
from amplitude_pipeline.transform.audit import AuditReport

__all__ = ["READ_ERRORS", "Findings", "KeyFinding", "LineProblem", "plural", "unreadable_object_message"]

READ_ERRORS: Final = (EOFError, OSError, zlib.error, BotoCoreError, ClientError)
"""What reading an object's lines raises when its bytes stop making sense or stop arriving."""


def unreadable_object_message(error: BaseException) -> str:
    """The loader's words for an object it cannot read (``load/event_files.py``)."""
    damaged = isinstance(error, EOFError | zlib.error)
    advice = "; the object itself is damaged: replace it" if damaged else ""
    return f"could not read the object: {describe_error(error)}{advice}"


@dataclass(slots=True)
class KeyFinding:
    """An unknown key, or a key whose values fail their conversion, over every source."""

    key: str
    records: int
    first_source: str
    first_line: int
    examples: list[str] = field(default_factory=list)
    column: str = ""
    column_type: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LineProblem:
    """Lines no mapping can load: malformed, unreadable, or with a key no entry can name."""

    source: str
    line: int
    message: str
    lines: int = 1

    def __str__(self) -> str:
        more = f" ({self.lines:,} lines like it)" if self.lines > 1 else ""
        return f"{self.source}, line {self.line}: {self.message}{more}"


@dataclass
class Findings:
    unknown: dict[str, KeyFinding] = field(default_factory=dict)
    failures: dict[str, KeyFinding] = field(default_factory=dict)
    problems: list[LineProblem] = field(default_factory=list)
    lines_scanned: int = 0
    sources: int = 0

    def add_report(self, source: str, report: AuditReport, max_examples: int = 3) -> None:
        self.sources += 1
        self.lines_scanned += report.lines_scanned
        for unknown in report.unknown_keys:
            self._add(self.unknown, source, unknown.key, unknown.count, unknown.first_line, unknown.examples)
        for failure in report.conversion_failures:
            merged = self._add(
                self.failures,
                source,
                failure.key,
                failure.count,
                failure.first_line,
                tuple(example for example, _ in failure.examples),
                max_examples,
            )
            if not merged.reason:
                merged.column, merged.column_type, merged.reason = (
                    failure.column,
                    failure.column_type,
                    failure.reason,
                )
        for malformed in report.malformed:
            self.problems.append(
                LineProblem(source, malformed.first_line, malformed.message, malformed.count)
            )

    @staticmethod
    def _add(
        into: dict[str, KeyFinding],
        source: str,
        key: str,
        records: int,
        first_line: int,
        examples: tuple[str, ...],
        max_examples: int = 3,
    ) -> KeyFinding:
        finding = into.get(key)
        if finding is None:
            finding = into[key] = KeyFinding(key, 0, source, first_line)
        finding.records += records
        for example in examples:
            if len(finding.examples) < max_examples and example not in finding.examples:
                finding.examples.append(example)
        return finding

    def add_unreadable(self, source: str, line: int, error: BaseException) -> None:
        self.problems.append(LineProblem(source, line, unreadable_object_message(error)))

    @property
    def clean(self) -> bool:
        return not (self.unknown or self.failures or self.problems)

    def report_lines(self, mapping_name: str = "field_mappings.yaml") -> list[str]:
        """``validate``'s output: one line per unknown key, failing key and kind of bad line, in
        the loader's words (the key as ``user_properties[...]``, the column, the reason)."""
        lines = [
            f"user_properties[{short_repr(finding.key)}]: unknown key in {_records(finding.records)}, first: "
            f"{finding.first_source}, line {finding.first_line}: add it to {mapping_name} (ignore, or the "
            "source of a column)"
            for finding in self.unknown.values()
        ]
        lines += [
            f"user_properties[{short_repr(finding.key)}] fails its conversion (column {finding.column}, type "
            f"{finding.column_type}) in {_records(finding.records)}, first: {finding.first_source}, line "
            f"{finding.first_line}: {finding.reason}"
            for finding in self.failures.values()
        ]
        lines += [str(problem) for problem in self.problems]
        return lines


def plural(count: int, noun: str) -> str:
    """``1 record``, ``2 records``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _records(count: int) -> str:
    return plural(count, "record")
