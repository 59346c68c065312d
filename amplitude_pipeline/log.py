"""What plain-Python code logs through: Dagster's ``context.log`` or a ``logging.Logger`` alike."""

from typing import Protocol


class Log(Protocol):
    def info(self, msg: str, /) -> object: ...
    def warning(self, msg: str, /) -> object: ...
