"""The read-only questions the table checks ask of the DWH (CONTRACT §6's invariants), over one
connection: identities on more than one row, rows dated in the future, row counts. The checks
(``defs/user_properties/checks.py``) only turn the answers into results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Interval, Table, and_, func, inspect, literal, select

from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, DWHRepository


@dataclass(frozen=True)
class DuplicatedIdentity:
    """Values of one identity column found on more than one row."""

    column: str
    values: int
    most_repeated: list[tuple[Any, int]]
    """(value, rows), the most repeated first."""


@dataclass(frozen=True)
class IdentityReport:
    duplicated: list[DuplicatedIdentity]
    rows_without_identity: int


@dataclass(frozen=True)
class FutureRows:
    rows: int
    latest: datetime | None
    cutoff: datetime
    examples: list[dict[str, Any]]
    """The latest such rows: their identity columns, ``uuid`` and ``event_time``."""


class TableAudit:
    """Use through :func:`table_audit`."""

    def __init__(self, conn: Connection, schema: str) -> None:
        self._conn = conn
        self._schema = schema

    def exists(self, table: Table) -> bool:
        return inspect(self._conn).has_table(table.name, schema=self._schema)

    def identities(self, table: Table, examples: int) -> IdentityReport:
        """Identities on more than one row, per identity rule of the table (``ehr_id``; in the
        changeable table also ``amplitude_id`` where ``ehr_id`` is NULL), and rows with none."""
        ehr_id = table.c.ehr_id
        rules: list[tuple[str, ColumnElement[Any], ColumnElement[bool]]] = [
            ("ehr_id", ehr_id, ehr_id.is_not(None))
        ]
        without_identity: ColumnElement[bool] = ehr_id.is_(None)
        if table.name == CHANGEABLE_TABLE:
            amplitude_id = table.c.amplitude_id
            rules.append(("amplitude_id", amplitude_id, and_(ehr_id.is_(None), amplitude_id.is_not(None))))
            without_identity = and_(ehr_id.is_(None), amplitude_id.is_(None))
        duplicated = [self._duplicates(table, name, column, rows, examples) for name, column, rows in rules]
        rows_without = int(
            self._conn.execute(select(func.count()).select_from(table).where(without_identity)).scalar_one()
        )
        return IdentityReport(duplicated, rows_without)

    def _duplicates(
        self, table: Table, name: str, column: ColumnElement[Any], rows: ColumnElement[bool], examples: int
    ) -> DuplicatedIdentity:
        groups = (
            select(column.label("identity"), func.count().label("rows"))
            .select_from(table)
            .where(rows)
            .group_by(column)
            .having(func.count() > 1)
            .subquery()
        )
        found = self._conn.execute(
            select(groups.c.identity, groups.c.rows, func.count().over().label("duplicated"))
            .order_by(groups.c.rows.desc(), groups.c.identity)
            .limit(examples)
        ).all()
        return DuplicatedIdentity(
            name, found[0].duplicated if found else 0, [(row.identity, row.rows) for row in found]
        )

    def rows_in_future(self, table: Table, tolerance: timedelta, examples: int) -> FutureRows:
        """Rows whose ``event_time`` is later than the DWH's clock plus ``tolerance``."""
        cutoff = func.now() + literal(tolerance, Interval())
        in_future = table.c.event_time > cutoff
        summary = self._conn.execute(
            select(
                func.count().label("rows"),
                func.max(table.c.event_time).label("latest"),
                cutoff.label("cutoff"),
            )
            .select_from(table)
            .where(in_future)
        ).one()
        identity_columns = [
            table.c.ehr_id,
            *([table.c.amplitude_id] if table.name == CHANGEABLE_TABLE else []),
        ]
        found = (
            [
                dict(row._mapping)
                for row in self._conn.execute(
                    select(*identity_columns, table.c.uuid, table.c.event_time)
                    .where(in_future)
                    .order_by(table.c.event_time.desc())
                    .limit(examples)
                )
            ]
            if summary.rows
            else []
        )
        return FutureRows(summary.rows, summary.latest, summary.cutoff, found)

    def row_count(self, table: Table) -> int:
        return int(self._conn.execute(select(func.count()).select_from(table)).scalar_one())


@contextmanager
def table_audit(dwh: DWHRepository) -> Iterator[TableAudit]:
    """The questions over one read-only connection, closed when the block ends."""
    with dwh.engine.connect() as conn:
        yield TableAudit(conn, dwh.db_schema)
