from dagster import MetadataValue

from amplitude_pipeline.storage.dwh import TableWriteCounts


def write_counts_metadata(counts: TableWriteCounts) -> dict[str, MetadataValue]:
    """What one load did to one table, as the UI shows it."""
    return {
        "inserted": MetadataValue.int(counts.inserted),
        "updated": MetadataValue.int(counts.updated),
        "unchanged": MetadataValue.int(counts.unchanged),
    }
