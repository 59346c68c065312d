"""``python -m amplitude_pipeline.mapping propose|validate`` (CONTRACT §9).

stdout carries only the result (``propose``: YAML; ``validate``: one line per finding);
everything else goes to stderr. Exit codes: 0 done (``validate``: nothing found), 1 the sources
hold what no mapping loads, or ``validate`` found something, or S3 failed; 2 a usage error or a
mapping file that does not load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from amplitude_pipeline.mapping.assistant import draft_mapping, validate
from amplitude_pipeline.mapping.findings import plural
from amplitude_pipeline.mapping.sources import Source, SourceError, resolve_sources
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.storage.s3 import s3_client
from amplitude_pipeline.transform.mapping import FieldMappings, MappingFileError, load_field_mappings

__all__ = ["main"]

EXIT_OK: Final = 0
EXIT_FOUND: Final = 1
EXIT_USAGE: Final = 2
PROGRAM: Final = "python -m amplitude_pipeline.mapping"

_SOURCE_HELP = (
    "a local .json.gz/.jsonl.gz file, s3://bucket/key, or s3://bucket/prefix/ (every event file "
    "under it); S3 through S3_ENDPOINT_URL, AWS_REGION and boto3's credentials (AWS_*)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Write and check field_mappings.yaml from the events themselves."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{propose,validate}")
    proposing = commands.add_parser(
        "propose",
        help="print a draft mapping (YAML) for the sources' user_properties keys",
        description="Print a mapping (CONTRACT §5 format, commented) for every user_properties key "
        "of the sources; with --against, only what that mapping lacks. Only YAML goes to stdout.",
    )
    proposing.add_argument("sources", nargs="+", metavar="SOURCE", help=_SOURCE_HELP)
    choice = proposing.add_mutually_exclusive_group()
    choice.add_argument(
        "--identity", metavar="KEY", help="the key holding the EHR id: the output then loads as it is"
    )
    choice.add_argument(
        "--against", metavar="MAPPING", help="print only what this mapping file lacks for the sources"
    )
    proposing.add_argument(
        "--samples",
        action="store_true",
        help="show sample values (and the values that failed): they may be personal data",
    )
    validating = commands.add_parser(
        "validate",
        help="read the sources through a mapping and list every unknown key and failed conversion",
        description="Read the sources through MAPPING, writing nothing; print every unknown key and "
        "every failed conversion, one per line. Exit 0 when there is none, 1 otherwise.",
    )
    validating.add_argument("--mapping", required=True, metavar="MAPPING", help="the mapping file")
    validating.add_argument("sources", nargs="+", metavar="SOURCE", help=_SOURCE_HELP)
    return parser


class _S3:
    """The S3 client, made on first use (local sources need none)."""

    def __init__(self) -> None:
        self._client: Any = None

    def __call__(self) -> Any:
        if self._client is None:
            # CONTRACT §2's variables; credentials from boto3's own chain, as the code location's.
            self._client = s3_client(
                os.environ.get("S3_ENDPOINT_URL") or None, os.environ.get("AWS_REGION") or None
            )
        return self._client


class _Stop(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            arguments = _parser().parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed the usage and the error (or the help)
        return int(exit_request.code or 0)
    try:
        if arguments.command == "validate":
            return _validate(arguments, out, err)
        return _propose(arguments, out, err)
    except _Stop as stop:
        print(f"{PROGRAM} {arguments.command}: {stop}", file=err)
        return stop.code


def _mapping(path: str) -> FieldMappings:
    try:
        return load_field_mappings(path)
    except MappingFileError as error:
        raise _Stop(EXIT_USAGE, str(error)) from None
    except OSError as error:
        raise _Stop(EXIT_USAGE, f"{path}: cannot read the mapping file: {error.strerror or error}") from None


def _sources(arguments: list[str], s3: _S3) -> list[Source]:
    try:
        return resolve_sources(arguments, s3)
    except SourceError as error:
        raise _Stop(EXIT_USAGE, str(error)) from None
    except (ClientError, BotoCoreError) as error:
        raise _Stop(EXIT_FOUND, f"S3 would not list or find the sources: {describe_error(error)}") from None


def _propose(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    mappings = _mapping(arguments.against) if arguments.against else None
    s3 = _S3()
    draft = draft_mapping(
        _sources(arguments.sources, s3),
        s3,
        identity_key=arguments.identity,
        against=mappings,
        samples=arguments.samples,
    )
    if draft.yaml is None:
        for problem in draft.problems:
            print(problem, file=err)
        raise _Stop(
            EXIT_FOUND,
            f"{plural(len(draft.problems), 'kind')} of lines no mapping can load (above, each with its "
            "first file and line); the load would stop there too: fix or replace those files",
        )
    for warning in draft.warnings:
        print(f"{PROGRAM} propose: warning: {warning}", file=err)
    out.write(draft.yaml)
    return EXIT_OK


def _validate(arguments: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    mappings = _mapping(arguments.mapping)
    s3 = _S3()
    findings = validate(_sources(arguments.sources, s3), s3, mappings)
    for line in findings.report_lines(Path(arguments.mapping).name):
        print(line, file=out)
    print(
        f"{PROGRAM} validate: {plural(findings.lines_scanned, 'line')} in {plural(findings.sources, 'file')}; "
        f"{plural(len(findings.unknown), 'unknown key')}, {plural(len(findings.failures), 'key')} whose "
        f"values fail, {plural(len(findings.problems), 'kind')} of lines no mapping can load",
        file=err,
    )
    return EXIT_OK if findings.clean else EXIT_FOUND
