"""The assistant's passes over the sources: ``propose``, ``propose --against``, ``validate``, and
the key check's single pass (:func:`audit_and_propose`).

Every pass streams each source once, line by line, and keeps only bounded aggregates. Lines no
mapping can load (malformed JSON, a record the loader refuses whatever the mapping, an object
that cannot be read) are gathered as :class:`LineProblem` s in the loader's words, naming file
and line, rather than stopping the pass: one run lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from amplitude_pipeline.collector import collected_every, collector_paused
from amplitude_pipeline.mapping.findings import READ_ERRORS, Findings, LineProblem, unreadable_object_message
from amplitude_pipeline.mapping.profile import Profile, PropertyProfiler
from amplitude_pipeline.mapping.render import render_against, render_proposal
from amplitude_pipeline.mapping.sources import Source
from amplitude_pipeline.text import short_repr
from amplitude_pipeline.transform.audit import AuditReport, RecordObserver, audit_user_properties
from amplitude_pipeline.transform.event_lines import malformed_line_message
from amplitude_pipeline.transform.mapping import FieldMappings
from amplitude_pipeline.transform.records import collect_envelope_errors

__all__ = [
    "Proposal",
    "audit_and_propose",
    "profiler_for",
    "propose",
    "propose_against",
    "validate",
]

S3Client = Callable[[], Any]


@dataclass
class Proposal:
    """A pass's profile and the lines that no mapping can load (``problems``: exit 1)."""

    profile: Profile
    problems: list[LineProblem] = field(default_factory=list)
    findings: Findings | None = None


class _Reading:
    """A source's lines; a read that fails ends them and becomes :attr:`problem` (at the line
    that could not be read, as the loader counts)."""

    def __init__(self, source: Source, s3_client: S3Client) -> None:
        self.source = source
        self.s3_client = s3_client
        self.problem: LineProblem | None = None

    def lines(self) -> Iterator[bytes]:
        line_index = 0
        try:
            with self.source.open_lines(self.s3_client) as lines:
                for line in collected_every(lines):
                    yield line
                    line_index += 1
        except READ_ERRORS as error:
            self.problem = LineProblem(self.source.label, line_index, unreadable_object_message(error))


class _ProblemTally:
    """Bad lines per (source, kind of problem): first line, its message, how many."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._first: dict[str, list[Any]] = {}

    def note(self, problem: str, line_index: int, message: str) -> None:
        first = self._first.get(problem)
        if first is None:
            self._first[problem] = [line_index, message, 1]
        else:
            first[2] += 1

    def problems(self) -> list[LineProblem]:
        return [
            LineProblem(self.source, line, message, count) for line, message, count in self._first.values()
        ]


def _scan_lines(lines: Iterable[bytes], observe: RecordObserver, tally: _ProblemTally) -> None:
    """Hand every record the loader could take to ``observe``; note the lines it could not."""
    parse = orjson.loads
    for line_index, line in enumerate(lines):
        if not line or line.isspace():
            continue
        try:
            record = parse(line)
        except orjson.JSONDecodeError as error:
            tally.note("json", line_index, malformed_line_message(line, error))
            continue
        envelope_errors = collect_envelope_errors(record)
        if envelope_errors:
            for envelope_error in envelope_errors:
                tally.note(envelope_error.key or "record", line_index, str(envelope_error))
            continue
        observe(record, line_index)


def propose(sources: Iterable[Source], s3_client: S3Client, identity_key: str | None = None) -> Proposal:
    """``propose``: one pass over the sources, every key profiled."""
    profiler = PropertyProfiler(identity_key)
    problems: list[LineProblem] = []
    with collector_paused():
        for source in sources:
            profiler.start_source(source.label)
            reading = _Reading(source, s3_client)
            tally = _ProblemTally(source.label)
            _scan_lines(reading.lines(), profiler.observe_record, tally)
            problems += tally.problems()
            if reading.problem is not None:
                problems.append(reading.problem)
        profile = profiler.profile()
    return Proposal(profile, problems + _unnameable_problems(profile))


def profiler_for(mappings: FieldMappings) -> PropertyProfiler:
    """A profiler judging keys as ``mappings`` would: its identity key, its columns' value_maps."""
    value_maps = {column.source: column.value_map for _, column in mappings.sections() if column.value_map}
    return PropertyProfiler(mappings.identity_key, value_maps)


def propose_against(sources: Iterable[Source], s3_client: S3Client, mappings: FieldMappings) -> Proposal:
    """``propose --against``: the audit of each source and the profile, in one pass per source."""
    profiler = profiler_for(mappings)
    findings = Findings()
    with collector_paused():
        for source in sources:
            profiler.start_source(source.label)
            reading = _Reading(source, s3_client)
            report = audit_user_properties(reading.lines(), mappings, observe_record=profiler.observe_record)
            findings.add_report(source.label, report)
            if reading.problem is not None:
                findings.problems.append(reading.problem)
        profile = profiler.profile()
    return Proposal(profile, findings.problems + _unnameable_problems(profile), findings)


def validate(sources: Iterable[Source], s3_client: S3Client, mappings: FieldMappings) -> Findings:
    """``validate``: every source read through the mapping, as the key check's audit reads it."""
    findings = Findings()
    with collector_paused():
        for source in sources:
            reading = _Reading(source, s3_client)
            findings.add_report(source.label, audit_user_properties(reading.lines(), mappings))
            if reading.problem is not None:
                findings.problems.append(reading.problem)
    return findings


@dataclass
class Draft:
    """What ``propose`` prints: the YAML (None when lines no mapping can load were found: then
    ``problems`` names them), and warnings for the person reading it."""

    yaml: str | None
    problems: list[LineProblem]
    warnings: list[str]
    profile: Profile


def draft_mapping(
    sources: list[Source],
    s3_client: S3Client,
    *,
    identity_key: str | None = None,
    against: FieldMappings | None = None,
    samples: bool = False,
) -> Draft:
    """``propose`` (CONTRACT §9), for the CLI and the ``propose_field_mappings`` job alike: a whole
    mapping, or with ``against`` only what that mapping lacks."""
    if against is not None:
        proposal = propose_against(sources, s3_client, against)
    else:
        proposal = propose(sources, s3_client, identity_key)
    if proposal.problems:
        return Draft(None, proposal.problems, [], proposal.profile)
    labels = [source.label for source in sources]
    warnings: list[str] = []
    if against is not None and proposal.findings is not None:
        text = render_against(proposal.profile, against, proposal.findings, labels, samples=samples)
    else:
        if identity_key is not None and proposal.profile.key(identity_key) is None:
            warnings.append(f"no record carries the identity key {identity_key!r}")
        text = render_proposal(proposal.profile, labels, samples=samples)
    return Draft(text, [], warnings, proposal.profile)


def audit_and_propose(
    lines: Iterable[bytes], mappings: FieldMappings, source: str, *, samples: bool = False
) -> tuple[AuditReport, str]:
    """The key check's audit of one object and, from the same pass, the ``propose --against``
    snippet for it (YAML text; "nothing to add" when the audit passes).

    Meant for ``user_properties_keys_known``: it reads the object once, as the audit alone would.
    ``samples`` puts the values that failed into the snippet (personal data: off by default).
    """
    profiler = profiler_for(mappings)
    profiler.start_source(source)
    with collector_paused():
        report = audit_user_properties(
            collected_every(lines), mappings, observe_record=profiler.observe_record
        )
    findings = Findings()
    findings.add_report(source, report)
    return report, render_against(profiler.profile(), mappings, findings, [source], samples=samples)


def _unnameable_problems(profile: Profile) -> list[LineProblem]:
    return [
        LineProblem(
            key.first_source,
            key.first_line,
            f"user_properties[{short_repr(key.key)}]: {key.reason}",
            key.records,
        )
        for key in profile.unnameable
    ]
