"""Per-file score of a mutmut run (scripts/mutation.sh): killed / survived / timeout / no tests.

Reads the verdicts mutmut keeps beside each mutated file (``mutants/<path>.meta``) and prints one
Markdown row per file under the given paths, then the surviving mutants' names (``mutmut show
NAME`` prints a mutant's diff while ``mutants/`` exists). The score is killed + timeout over the
mutants that were tested, as mutmut's own badge counts it. Mutants a run did not check (it was
narrowed to other functions) are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "survived", "timeout", "no tests", "other")


def verdicts(meta: Path) -> dict[str, str]:
    exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in exit_codes.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="source files or folders, e.g. amplitude_pipeline/load")
    parser.add_argument("--mutants", default="mutants", type=Path, help="mutmut's folder (default: mutants)")
    arguments = parser.parse_args()

    metas: list[Path] = []
    for path in arguments.paths:
        under = arguments.mutants / path
        metas += [Path(f"{under}.meta")] if path.endswith(".py") else sorted(under.rglob("*.py.meta"))
    rows, survivors, total = [], [], Counter[str]()
    for meta in dict.fromkeys(metas):
        if not meta.exists():
            continue
        found = {name: status for name, status in verdicts(meta).items() if status != "not checked"}
        if not found:
            continue
        counts = Counter(status if status in COLUMNS else "other" for status in found.values())
        total += counts
        rows.append((str(meta.relative_to(arguments.mutants))[: -len(".meta")], counts))
        survivors += sorted(name for name, status in found.items() if status == "survived")
    if not rows:
        print(f"no mutmut results under {arguments.mutants} for {' '.join(arguments.paths)}", file=sys.stderr)
        return 1

    print("| file | " + " | ".join(COLUMNS) + " | score |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, counts in [*rows, ("**total**", total)]:
        tested = counts["killed"] + counts["survived"] + counts["timeout"]
        score = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%" if tested else "-"
        print(f"| {name} | " + " | ".join(str(counts[column]) for column in COLUMNS) + f" | {score} |")
    print(f"\nsurvivors ({len(survivors)}):")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
