"""The proposals as commented YAML in CONTRACT §5's format.

PyYAML writes no comments, so the document is written line by line here; every scalar goes
through :func:`yaml_scalar` and every comment through :func:`_said`, which keep any key (line
breaks, quotes, a YAML keyword like ``yes``) on one line and read back as itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import yaml

from amplitude_pipeline.mapping.findings import Findings, KeyFinding
from amplitude_pipeline.mapping.profile import (
    Candidate,
    KeyProfile,
    Profile,
    UnnameableKey,
)
from amplitude_pipeline.text import short_repr, shorten
from amplitude_pipeline.transform.mapping import SYSTEM_COLUMNS, ColumnMapping, FieldMappings

__all__ = ["column_name_for", "render_against", "render_proposal", "yaml_scalar"]

_PLAIN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MAX_NAME: Final = 63
_COMMENT_VALUE: Final = 60
_HEADER_KEYS: Final = 8


def yaml_scalar(text: str) -> str:
    """``text`` as a one-line YAML scalar that reads back as this very string."""
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    if text.isprintable():
        return "'" + text.replace("'", "''") + "'"
    return '"' + "".join(_double_quoted(character) for character in text) + '"'


def _double_quoted(character: str) -> str:
    if character == "\\" or character == '"':
        return "\\" + character
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _regex_scalar(regex: str) -> str:
    return "'" + regex.replace("'", "''") + "'"


def _said(value: Any, limit: int = _COMMENT_VALUE) -> str:
    """A key or value for a comment: Python's repr, which escapes every line break."""
    return short_repr(value, limit)


def _comment_text(text: str, limit: int = 200) -> str:
    """Text for a comment, on one line: characters that are not printable (line breaks among
    them) written as escapes."""
    return shorten("".join(c if c.isprintable() else repr(c)[1:-1] for c in text), limit)


def column_name_for(key: str, taken: set[str]) -> str:
    """A plain lower-case identifier for ``key``'s column, not in ``taken`` (which it joins).

    The key itself when it is one; else its lower-case letters, digits and ``_`` (other
    characters become ``_``), ``property`` when nothing is left; a system column's name gets
    ``user_`` in front; a clash gets ``_2``, ``_3``…
    """
    name = key
    if _IDENTIFIER.fullmatch(name) is None:
        name = re.sub(r"[^a-z0-9_]+", "_", key.lower()).strip("_") or "property"
        if name[0].isdigit():
            name = f"p_{name}"
        name = name[:_MAX_NAME]
    if name in SYSTEM_COLUMNS:
        name = f"user_{name}"
    base, number = name, 2
    while name in taken:
        suffix = f"_{number}"
        name = base[: _MAX_NAME - len(suffix)] + suffix
        number += 1
    taken.add(name)
    return name


@dataclass(frozen=True)
class _Entry:
    """One line of a section, with the comment lines above it."""

    comments: tuple[str, ...]
    line: str


def _column_line(name: str, key: str, candidate: Candidate, value_map: dict[str, Any] | None = None) -> str:
    options = []
    if key != name:
        options.append(f"source: {yaml_scalar(key)}")
    options.append(f"type: {candidate.column_type}")
    if candidate.regex is not None:
        options.append(f"regex: {_regex_scalar(candidate.regex)}")
    if value_map:
        pairs = ", ".join(f"{yaml_scalar(text)}: {_map_target(target)}" for text, target in value_map.items())
        options.append(f"value_map: {{{pairs}}}")
    return f"{yaml_scalar(name)}: {{{', '.join(options)}}}"


def _map_target(target: Any) -> str:
    if isinstance(target, str):
        return yaml_scalar(target)
    return yaml.safe_dump(target, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _statistics(profile: KeyProfile, records: int) -> str:
    kinds = ", ".join(
        f"{kind} {count:,}" for kind, count in sorted(profile.json_kinds.items(), key=lambda item: -item[1])
    )
    at_least = "≥ " if profile.distinct_is_lower_bound else ""
    distinct = f"{at_least}{profile.distinct:,} distinct"
    return f"{kinds}; {_share(profile.records, records)} of records; {distinct}"


def _sample_comments(profile: KeyProfile, samples: bool, fitted_type: str | None) -> list[str]:
    if fitted_type == "str" and profile.enumeration is not None and len(profile.enumeration) > 1:
        count = len(profile.enumeration)
        if samples:
            return [
                f"  {count} distinct values, a value_map can unify spellings: {', '.join(profile.enumeration)}"
            ]
        return [f"  {count} distinct values: a value_map may unify spellings (--samples shows them)"]
    if samples and profile.samples:
        return [f"  e.g. {', '.join(profile.samples)}"]
    return []


def _section_of(profile: KeyProfile, candidate: Candidate) -> tuple[str, str]:
    """``(section, why)``: permanent when no followed user's non-NULL value changed under the type."""
    if profile.changes_under(candidate):
        return "changeable", "changes for some users"
    if not profile.has_value:
        return "permanent", "never holds a value here: type and section are guesses"
    if profile.repeats == 0:
        return "permanent", "no user's snapshot changed while carrying it: permanent by default"
    return "permanent", ""


def _key_entry(
    profile: KeyProfile, whole: Profile, taken: set[str], samples: bool
) -> tuple[str, _Entry] | tuple[None, _Entry]:
    """The key's section and entry (section ``None``: ignore)."""
    stats = _statistics(profile, whole.records)
    candidate = profile.proposal
    if candidate is None:
        kinds = ", ".join(kind for kind in profile.json_kinds if kind != "null")
        ignored = f"{_said(profile.key)}: {stats}; no type holds every value ({kinds})"
        return None, _Entry((ignored,), f"- {yaml_scalar(profile.key)}")
    section, why = _section_of(profile, candidate)
    name = column_name_for(profile.key, taken)
    heading = f"{_said(profile.key)}: {stats}" + (f"; {why}" if why else "")
    comments = (heading, *_sample_comments(profile, samples, candidate.column_type))
    return section, _Entry(comments, _column_line(name, profile.key, candidate))


def _write_section(out: list[str], title: str, entries: list[_Entry]) -> None:
    if not entries:
        return
    out.append("")
    out.append(f"{title}:")
    for entry in entries:
        out.extend(f"  # {comment}" for comment in entry.comments)
        out.append(f"  {entry.line}")


def _users_sentence(profile: Profile) -> str:
    who = f"{profile.identity_key}, else amplitude_id" if profile.identity_key else "amplitude_id"
    if profile.users_sampled:
        return (
            f"Sections judged on a hash sample of {profile.users_followed:,} of about "
            f"{profile.users_estimate:,} users (by {who})."
        )
    return f"Sections judged on all {profile.users_followed:,} users (by {who})."


def _source_sentence(labels: list[str]) -> str:
    shown = ", ".join(labels[:3]) + (f" and {len(labels) - 3:,} more" if len(labels) > 3 else "")
    plural = "source" if len(labels) == 1 else "sources"
    return f"{len(labels):,} {plural}: {shown}"


def render_proposal(profile: Profile, sources: list[str], *, samples: bool = False) -> str:
    """``propose``: a whole mapping file; loadable as it is when the profile has an identity key."""
    out = [
        "# Mapping proposed by `python -m amplitude_pipeline.mapping propose` (CONTRACT §5) from",
        f"# {_comment_text(_source_sentence(sources))}; {profile.records:,} records.",
        "# Per key: the JSON kinds of its values (records), the share of records carrying it, its",
        "# distinct values. Types are the most specific every value converts to; review the names,",
        "# the sections and the value_maps before use.",
        f"# {_users_sentence(profile)}",
    ]
    taken: set[str] = set()
    sections: dict[str | None, list[_Entry]] = {None: [], "permanent": [], "changeable": []}
    identity_profile = profile.key(profile.identity_key) if profile.identity_key else None
    for key_profile in profile.keys:
        if key_profile is identity_profile:
            continue
        section, entry = _key_entry(key_profile, profile, taken, samples)
        sections[section].append(entry)

    if profile.identity_key is not None:
        out += ["", "identity:"]
        if identity_profile is not None:
            out.append(f"  # {_said(profile.identity_key)}: {_statistics(identity_profile, profile.records)}")
            if not identity_profile.fits(Candidate(None)):
                out.append("  # some values are neither strings nor integers: the load refuses them")
        else:
            out.append("  # not carried by any record of these sources")
        out.append(f"  ehr_id: {yaml_scalar(profile.identity_key)}")
    else:
        out += _identity_help(profile)
    _write_section(out, "ignore", sections[None])
    _write_section(out, "permanent", sections["permanent"])
    _write_section(out, "changeable", sections["changeable"])
    out += _unnameable_comments(profile.unnameable)
    return "\n".join(out) + "\n"


def _identity_help(profile: Profile) -> list[str]:
    lines = [
        "",
        "# identity: not chosen (--identity KEY). Name the user_properties key that holds the EHR id:",
        "#   identity:",
        "#     ehr_id: <key>",
        "# and delete that key's column entry below.",
    ]
    if profile.identity_candidates:
        shown = ", ".join(_said(key) for key in profile.identity_candidates[:_HEADER_KEYS])
        lines.append(
            "# Candidates (a string or integer, one per amplitude_id, different for each user), most "
            "common first:"
        )
        lines.append(f"#   {shown}")
    else:
        lines.append(
            "# No key looks like one: a string or integer, one per amplitude_id, different per user."
        )
    return lines


def _unnameable_comments(unnameable: Iterable[UnnameableKey]) -> list[str]:
    lines = []
    for key in unnameable:
        lines.append(
            f"# Not mapped: user_properties[{_said(key.key)}] ({key.records:,} records, first: "
            f"{_comment_text(key.first_source)}, line {key.first_line}): {key.reason}."
        )
    return ["", *lines] if lines else []


def render_against(
    profile: Profile,
    mappings: FieldMappings,
    findings: Findings,
    sources: list[str],
    *,
    samples: bool = False,
) -> str:
    """``propose --against``: only what ``mappings`` lacks, as entries to paste into its sections.

    Unknown keys get an entry in the section the data suggests; a column whose values fail gets
    a replacement entry (same name, judged on every value of its key with its value_map); keys no
    entry can fix are named in comments.
    """
    taken = {column.name for _, column in mappings.sections()}
    sections: dict[str | None, list[_Entry]] = {None: [], "permanent": [], "changeable": []}
    notes: list[str] = []
    known = mappings.known_keys
    for key_profile in profile.keys:
        if key_profile.key in known:
            continue
        section, entry = _key_entry(key_profile, profile, taken, samples)
        sections[section].append(entry)

    columns_by_shown_key = {shorten(source, 120): route.column for source, route in mappings.routes.items()}
    sections_of = {column.name: section for section, column in mappings.sections()}
    for finding in findings.failures.values():
        column = columns_by_shown_key.get(finding.key)
        if column is None:
            notes += _identity_failure(finding, samples)
            continue
        failing = profile.key(column.source)
        if failing is None:
            continue
        section, entry = _replacement(column, failing, finding, sections_of[column.name], samples)
        sections[section].append(entry)

    unknown = sum(1 for key_profile in profile.keys if key_profile.key not in known)
    out = [
        f"# What the mapping lacks for {_comment_text(_source_sentence(sources))}",
        "# (propose --against). Paste each entry into the section of the same name; an entry named like",
        "# an existing column replaces it.",
        f"# {_count(unknown, 'unknown key')}, {_count(len(findings.failures), 'key')} whose values fail "
        "their conversion.",
    ]
    if not any(sections.values()) and not notes and not profile.unnameable:
        out.append("# Nothing to add: every key is known and every value converts.")
        return "\n".join(out) + "\n"
    out.append(f"# {_users_sentence(profile)}")
    _write_section(out, "ignore", sections[None])
    _write_section(out, "permanent", sections["permanent"])
    _write_section(out, "changeable", sections["changeable"])
    if notes:
        out += ["", *notes]
    out += _unnameable_comments(profile.unnameable)
    return "\n".join(out) + "\n"


def _failure_comments(finding: KeyFinding, samples: bool) -> list[str]:
    lines = [
        f"  {finding.records:,} records fail ({finding.reason}); first: {_comment_text(finding.first_source)}, "
        f"line {finding.first_line}"
    ]
    if samples and finding.examples:
        lines.append(f"  values that failed: {', '.join(finding.examples)}")
    elif finding.examples:
        lines.append("  (--samples shows the values that failed)")
    return lines


def _identity_failure(finding: KeyFinding, samples: bool) -> list[str]:
    return [
        f"# identity {_said(finding.key)}: no mapping entry fixes its values; the data must change:",
        *(f"#{line}" for line in _failure_comments(finding, samples)),
    ]


def _replacement(
    column: ColumnMapping, profile: KeyProfile, finding: KeyFinding, section: str, samples: bool
) -> tuple[str | None, _Entry]:
    fix = profile.proposal
    heading = f"replaces {section}.{column.name} ({column.type}"
    heading += f", regex {column.regex})" if column.regex else ")"
    comments = [heading, *_failure_comments(finding, samples)]
    if fix is None:
        kinds = ", ".join(kind for kind in profile.json_kinds if kind != "null")
        comments.append(
            f"  no type holds every value ({kinds}): delete {section}.{column.name} and ignore the key"
        )
        return None, _Entry(tuple(comments), f"- {yaml_scalar(column.source)}")
    if fix.column_type != column.type:
        comments.append(
            f"  the type changes from {column.type} to {fix.column_type}: the tables never retype a column, so "
            "where it exists already, name the entry anew or retype the column"
        )
    line = _column_line(column.name, column.source, fix, column.value_map)
    return section, _Entry(tuple(comments), line)
