"""Running the repository's shell scripts from tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def environment_without(drop: Callable[[str], bool]) -> dict[str, str]:
    """This process's environment without the variables ``drop`` selects."""
    return {name: value for name, value in os.environ.items() if not drop(name)}
