"""The corpus's cases: their lines, the object the loader reads, and what must happen (cases.yaml)."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent
CASES_DIR = CORPUS / "cases"
MANIFEST = CORPUS / "cases.yaml"
DEFAULT_BATCH_SIZE = 2

CASE_KEYS = frozenset({"fails", "loads", "xfail", "tmp", "gzip", "setup", "batch_size"})
OUTCOME_KEYS = frozenset({"fails", "loads", "xfail"})
FAILS_KEYS = frozenset({"line", "message_contains"})
LOADS_KEYS = frozenset({"changeable", "permanent", "records", "blank_lines"})


class ManifestError(ValueError):
    """cases.yaml and cases/ disagree, or an entry is malformed."""


@dataclass(frozen=True)
class Outcome:
    """What must happen: ``fails`` (line, words of the message) or ``loads`` (the tables)."""

    fails: dict[str, Any] | None
    loads: dict[str, Any] | None
    xfail: str | None

    @classmethod
    def parse(cls, name: str, entry: dict[str, Any]) -> Outcome:
        fails, loads = entry.get("fails"), entry.get("loads")
        if (fails is None) == (loads is None):
            raise ManifestError(f"{name}: exactly one of fails and loads")
        if fails is not None and (set(fails) != FAILS_KEYS or not fails["message_contains"]):
            raise ManifestError(f"{name}: fails needs line and message_contains, got {sorted(fails)}")
        if loads is not None and (
            not set(loads) <= LOADS_KEYS or not {"changeable", "permanent"} <= set(loads)
        ):
            raise ManifestError(
                f"{name}: loads lists both tables (and records, blank_lines), got {sorted(loads)}"
            )
        xfail = entry.get("xfail")
        if xfail is not None and not (isinstance(xfail, str) and xfail.strip()):
            raise ManifestError(f"{name}: xfail is the reason, as text")
        return cls(fails=fails, loads=loads, xfail=xfail)


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    outcome: Outcome
    tmp: Outcome | None
    gzip: Any
    setup: dict[str, Any]
    batch_size: int

    def lines(self) -> list[bytes]:
        """The case's lines, without their ``\\n``: a file's are split exactly as the loader splits."""
        if self.path.suffix == ".py":
            spec = importlib.util.spec_from_file_location(f"corpus_case_{self.name}", self.path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            generated: list[bytes] = module.lines()
            return generated
        text = self.path.read_bytes()
        lines = text.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        return lines

    @staticmethod
    def gzipped(lines: list[bytes]) -> bytes:
        return gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)

    def object_bytes(self, lines: list[bytes]) -> bytes:
        """The S3 object: the lines gzipped, or what the case's ``gzip`` says."""
        how = self.gzip
        if how is None:
            return self.gzipped(lines)
        text = b"".join(line + b"\n" for line in lines)
        if how == "plain":
            return text
        if "append" in how:
            return gzip.compress(text, mtime=0) + expand(how["append"]).encode("latin-1")
        if "members_split_at" in how:
            cuts = [0, *how["members_split_at"], len(text)]
            return b"".join(gzip.compress(text[a:b], mtime=0) for a, b in itertools.pairwise(cuts))
        if "truncate_inside_line" in how:
            return _truncated_inside_line(lines, how["truncate_inside_line"])
        raise ManifestError(f"{self.name}: unknown gzip {how!r}")


def _truncated_inside_line(lines: list[bytes], index: int) -> bytes:
    """One gzip member cut in the middle of line ``index``'s compressed bytes.

    Each line is flushed (Z_SYNC_FLUSH), so the bytes before the cut decompress to exactly
    lines ``0..index-1`` and a part of line ``index``, whatever zlib's version.
    """
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    flushed = [compressor.compress(b"") + compressor.flush(zlib.Z_SYNC_FLUSH)]
    for line in lines:
        flushed.append(compressor.compress(line + b"\n") + compressor.flush(zlib.Z_SYNC_FLUSH))
    before = b"".join(flushed[: index + 1])
    return before + flushed[index + 1][: len(flushed[index + 1]) // 2]


def expand(value: Any) -> Any:
    """``{repeat: s, times: n}`` is ``s * n``; anything else is itself."""
    if isinstance(value, dict) and set(value) == {"repeat", "times"}:
        return value["repeat"] * value["times"]
    return value


def _parse_tmp(name: str, entry: dict[str, Any]) -> Outcome | None:
    tmp = entry.get("tmp")
    if tmp is None:
        return None
    if tmp == "same":
        return Outcome.parse(name, {key: entry[key] for key in ("fails", "loads") if key in entry})
    if not isinstance(tmp, dict) or not set(tmp) <= OUTCOME_KEYS:
        raise ManifestError(f"{name}: tmp is `same` or a mapping of fails/loads/xfail")
    return Outcome.parse(f"{name} (tmp)", tmp)


def load_cases() -> list[Case]:
    """Every case of cases.yaml, in its order; every file in cases/ must have an entry and back."""
    entries: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    files = {path.stem: path for path in CASES_DIR.iterdir() if path.suffix in {".jsonl", ".py"}}
    unlisted = sorted(set(files) - set(entries))
    missing = sorted(set(entries) - set(files))
    if unlisted or missing:
        raise ManifestError(f"case files without an entry: {unlisted}; entries without a file: {missing}")
    cases = []
    for name, entry in entries.items():
        unknown = set(entry) - CASE_KEYS
        if unknown:
            raise ManifestError(f"{name}: unknown keys {sorted(unknown)}")
        cases.append(
            Case(
                name=name,
                path=files[name],
                outcome=Outcome.parse(name, entry),
                tmp=_parse_tmp(name, entry),
                gzip=entry.get("gzip"),
                setup=entry.get("setup") or {},
                batch_size=entry.get("batch_size", DEFAULT_BATCH_SIZE),
            )
        )
    return cases
