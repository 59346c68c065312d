"""What a load wrote, summed over its batches, and how it stopped: the same for both sources."""

import time
from dataclasses import dataclass, field
from typing import Any

from amplitude_pipeline.storage.dwh import BatchWriteCounts, TableWriteCounts


@dataclass(kw_only=True)
class WriteTotals:
    skipped_without_identity: int = 0
    permanent: TableWriteCounts = field(default_factory=TableWriteCounts)
    changeable: TableWriteCounts = field(default_factory=TableWriteCounts)
    started_at: float = field(default_factory=time.monotonic)

    def add_batch(self, counts: BatchWriteCounts, skipped_without_identity: int) -> None:
        self.permanent += counts.permanent
        self.changeable += counts.changeable
        self.skipped_without_identity += skipped_without_identity

    @property
    def duration_seconds(self) -> float:
        return round(time.monotonic() - self.started_at, 3)


class LoadStoppedError(Exception):
    """A fatal error stopped a load; everything before the failing line (or row) is committed.

    ``metadata`` is what the run's failure carries (CONTRACT §7). ``retryable``: running again
    later may succeed (the DWH or S3 stayed away longer than the retries waited); a data error
    never is, it needs a fix of the data or the mapping.
    """

    def __init__(self, message: str, result: WriteTotals, error_message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.result = result
        self.error_message = error_message
        self.retryable = retryable

    @property
    def metadata(self) -> dict[str, Any]:
        raise NotImplementedError
