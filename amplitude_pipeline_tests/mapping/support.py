"""Event files and CLI runs for the mapping assistant's tests."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import yaml

from amplitude_pipeline.mapping.cli import main
from amplitude_pipeline.transform.mapping import FieldMappings, parse_mapping_text
from amplitude_simulator.data import SimulatorConfig, expected_week_lines


def event(index: int, amplitude_id: int = 1, **user_properties: Any) -> dict[str, Any]:
    """An event whose ``user_properties`` are the keywords (``index`` makes uuid and time)."""
    return {
        "uuid": f"00000000-0000-4000-8000-{index:012d}",
        "event_time": f"2024-01-08 10:{index // 60 % 60:02d}:{index % 60:02d}",
        "amplitude_id": amplitude_id,
        "user_properties": user_properties,
    }


def write_events(path: Path, records: list[dict[str, Any]] | list[bytes]) -> Path:
    """A gzip JSON-lines file of the records (or of lines exactly as given)."""
    lines = [line if isinstance(line, bytes) else orjson.dumps(line) for line in records]
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    return path


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def mapping(self) -> FieldMappings:
        """stdout through the pipeline's own loader (it must be a mapping that loads as it is)."""
        return parse_mapping_text(self.stdout.encode(), "proposed.yaml")

    def yaml(self) -> Any:
        return yaml.safe_load(self.stdout)


def run(*argv: str | Path) -> Run:
    """``python -m amplitude_pipeline.mapping`` in this process, its streams captured."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = main([str(argument) for argument in argv], stdout=stdout, stderr=stderr)
    return Run(code, stdout.getvalue(), stderr.getvalue())


def merge_snippet(mapping_text: str, snippet_text: str) -> str:
    """A snippet "pasted" into a mapping: each entry into the section of the same name, an entry
    named like an existing column replacing it (README: "Writing the mapping")."""
    mapping = yaml.safe_load(mapping_text)
    snippet = yaml.safe_load(snippet_text) or {}
    for section, entries in snippet.items():
        if section == "ignore":
            mapping["ignore"] = [*(mapping.get("ignore") or []), *entries]
        else:
            mapping[section] = {**(mapping.get(section) or {}), **entries}
    return yaml.safe_dump(mapping, allow_unicode=True, sort_keys=False)


def simulator_week(path: Path, monday: date = date(2024, 1, 8)) -> Path:
    """The weekly object of the simulator's default project for the week of ``monday``."""
    lines = expected_week_lines(SimulatorConfig(), monday)
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    return path
