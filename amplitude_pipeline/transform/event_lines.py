"""What is wrong with an event line that is not JSON, in the same words wherever it is read.

The loader, the key check's audit and the mapping assistant all name a malformed line this way.
"""

from __future__ import annotations

import orjson

from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.transform.records import RecordError

__all__ = ["line_failure_message", "malformed_line_message"]


def line_failure_message(line: bytes, error: Exception) -> str:
    """Why a line cannot be loaded: malformed JSON, a record error, or something unexpected."""
    if isinstance(error, orjson.JSONDecodeError):
        return malformed_line_message(line, error)
    if isinstance(error, RecordError):
        return str(error)
    return f"unexpected {describe_error(error)}"


def malformed_line_message(line: bytes, error: orjson.JSONDecodeError) -> str:
    """What is wrong with a line that is not JSON, at which byte (orjson's own position counts
    characters of a line it calls "line 1", which reads oddly next to the file's line number)."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as not_utf8:
        return f"malformed JSON line: not valid UTF-8 at byte {not_utf8.start} ({not_utf8.reason})"
    return f"malformed JSON line: {error.msg} at character {error.pos}"
