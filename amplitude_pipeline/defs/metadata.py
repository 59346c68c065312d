"""What a load did to the two tables, as the metadata of their materializations: one builder for
the weekly table assets, the S3 sensor's job and the tmp-table migration."""

from collections.abc import Mapping
from typing import Any

from dagster import MetadataValue, TableColumn, TableSchema

from amplitude_pipeline.load.event_files import FileLoadResult
from amplitude_pipeline.load.tmp_table import MigrationResult
from amplitude_pipeline.load.totals import WriteTotals
from amplitude_pipeline.storage.dwh import TMP_TABLE, DWHRepository, TableWriteCounts


def write_counts_metadata(counts: TableWriteCounts) -> dict[str, MetadataValue]:
    """What one load did to one table, as the UI shows it."""
    return {
        "inserted": MetadataValue.int(counts.inserted),
        "updated": MetadataValue.int(counts.updated),
        "unchanged": MetadataValue.int(counts.unchanged),
    }


def tables_metadata(
    dwh: DWHRepository, totals: WriteTotals, shared: Mapping[str, Any], *, only_written: bool = False
) -> dict[str, dict[str, Any]]:
    """Each table's materialization metadata, by table name: ``shared`` (what the load was), the
    table's write counts, its row count and its columns. ``only_written`` leaves out a table the
    load did not touch."""
    return {
        table.name: {
            **shared,
            **write_counts_metadata(counts),
            "duration_seconds": MetadataValue.float(totals.duration_seconds),
            "dagster/row_count": MetadataValue.int(dwh.count_rows(table)),
            "dagster/column_schema": TableSchema(
                columns=[
                    TableColumn(column.name, str(column.type).lower(), description=column.comment)
                    for column in table.columns
                ]
            ),
        }
        for table, counts in (
            (dwh.tables.permanent, totals.permanent),
            (dwh.tables.changeable, totals.changeable),
        )
        if counts.candidates or not only_written
    }


def file_load_metadata(result: FileLoadResult) -> dict[str, Any]:
    """What one file's load was, for both tables' materializations."""
    return {
        "file_key": result.file_key,
        "records_read": MetadataValue.int(result.records),
        "skipped_without_identity": MetadataValue.int(result.skipped_without_identity),
        "blank_lines": MetadataValue.int(result.blank_lines),
        "started_after_line": MetadataValue.int(result.started_after),
        "last_successful_line": MetadataValue.int(result.last_successful_line),
        "already_loaded": result.already_loaded,
    }


def migration_metadata(result: MigrationResult) -> dict[str, Any]:
    """What one migration of the tmp table was, for the materializations of the tables it wrote."""
    return {
        "source": TMP_TABLE,
        "rows_migrated": MetadataValue.int(result.rows_migrated),
        "pages": MetadataValue.int(result.pages),
        "skipped_without_identity": MetadataValue.int(result.skipped_without_identity),
    }
