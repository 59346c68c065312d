"""Text for people: values cut to a readable length, secrets taken out.

Error messages carry data (keys, values, database messages) that can be arbitrarily large or
hold credentials; everything that reaches a log, an exception or Dagster's metadata goes
through here first.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any, Final

MESSAGE_LIMIT: Final = 500
VALUE_LIMIT: Final = 80
REDACTED: Final = "***"

_bounded = reprlib.Repr()
# reprlib stops at these sizes before building anything larger, so that the repr of a huge
# (or a self-referencing, or an exponentially aliased YAML) value costs bounded time and memory.
_bounded.maxlevel = 3
_bounded.maxdict = _bounded.maxlist = _bounded.maxtuple = _bounded.maxset = 5
_bounded.maxstring = _bounded.maxother = VALUE_LIMIT
_bounded.maxlong = 40


def short_repr(value: Any, limit: int = VALUE_LIMIT) -> str:
    """``repr(value)`` in bounded time and at most ``limit`` characters."""
    return shorten(_bounded.repr(value), limit)


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    keep = max(limit - 30, 10)
    return f"{text[:keep]}… ({len(text) - keep:,} more characters)"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``***``.

    Longer secrets go first, so that a secret containing a shorter one is removed whole.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
