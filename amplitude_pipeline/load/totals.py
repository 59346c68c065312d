"""What a load wrote, summed over its batches: the same for both sources."""

import time
from dataclasses import dataclass, field

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
