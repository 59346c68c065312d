"""The DWH: table definitions from the mapping, and every write the pipeline makes.

All SQL is SQLAlchemy Core with bound parameters; identifiers come only from the validated
mapping (plain lower-case identifiers) and this module. A batch is written set-based: its
candidate rows are COPYed into temporary staging tables, then merged with one
``INSERT … ON CONFLICT DO NOTHING`` and one ``UPDATE … FROM`` per table, whose conditions
carry CONTRACT §6's rules.
"""

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import sql
from sqlalchemy import (
    URL,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    Double,
    Engine,
    Index,
    MetaData,
    Table,
    Text,
    and_,
    case,
    cast,
    create_engine,
    func,
    inspect,
    literal_column,
    make_url,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.schema import CreateColumn, CreateSchema
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import retrying
from amplitude_pipeline.text import redact, shorten
from amplitude_pipeline.transform.batch import ChangeableRow, ReducedBatch, StoredVersion, UserKey
from amplitude_pipeline.transform.mapping import ColumnMapping, FieldMappings

PERMANENT_TABLE = "permanent_user_properties"
CHANGEABLE_TABLE = "changeble_user_properties"
TMP_TABLE = "tmp_user_properties"
CHECKPOINT_TABLE = "pipeline_file_checkpoints"

_COLUMN_TYPES: dict[str, Callable[[], TypeEngine[Any]]] = {
    "str": Text,
    "int": BigInteger,
    "float": Double,
    "bool": Boolean,
    "date": Date,
    "datetime": lambda: TIMESTAMP(timezone=True),
}
# Serialisation failures and deadlocks between concurrent loaders, a server shutting down or
# starting up, too many connections, and dropped connections pass when the transaction is
# simply run again.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08"})
# Data exceptions, integrity constraint violations and program limits (an index entry too large):
# the database refuses a record, and running the same records again cannot help.
_RECORD_LEVEL_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})

T = TypeVar("T")


def _timestamptz() -> TIMESTAMP:
    return TIMESTAMP(timezone=True)


def _mapped_columns(columns: Sequence[ColumnMapping]) -> list[Column[Any]]:
    return [Column(column.name, _COLUMN_TYPES[column.type]()) for column in columns]


@dataclass(frozen=True)
class DWHTables:
    """The tables as SQLAlchemy objects, built from one mapping."""

    metadata: MetaData
    permanent: Table
    changeable: Table
    tmp: Table
    checkpoints: Table
    permanent_columns: tuple[str, ...]
    changeable_columns: tuple[str, ...]

    @classmethod
    def build(cls, mappings: FieldMappings, schema: str) -> "DWHTables":
        metadata = MetaData(schema=schema)
        permanent = Table(
            PERMANENT_TABLE,
            metadata,
            Column("ehr_id", Text, primary_key=True),
            *_mapped_columns(mappings.permanent),
            Column("uuid", UUID(as_uuid=False), nullable=False),
            Column("event_time", _timestamptz(), nullable=False),
            Column("loaded_at", _timestamptz(), nullable=False, server_default=func.now()),
        )
        changeable = Table(
            CHANGEABLE_TABLE,
            metadata,
            Column("ehr_id", Text, nullable=True),
            Column("amplitude_id", BigInteger, nullable=True),
            *_mapped_columns(mappings.changeable),
            Column("uuid", UUID(as_uuid=False), nullable=False),
            Column("event_time", _timestamptz(), nullable=False),
            Column("loaded_at", _timestamptz(), nullable=False, server_default=func.now()),
        )
        # One row per user: per ehr_id when known, per amplitude_id for anonymous records.
        Index(
            f"{CHANGEABLE_TABLE}_ehr_id_key",
            changeable.c.ehr_id,
            unique=True,
            postgresql_where=changeable.c.ehr_id.is_not(None),
        )
        Index(
            f"{CHANGEABLE_TABLE}_amplitude_id_key",
            changeable.c.amplitude_id,
            unique=True,
            postgresql_where=changeable.c.ehr_id.is_(None),
        )
        tmp = Table(
            TMP_TABLE,
            metadata,
            Column("uuid", UUID(as_uuid=False), primary_key=True),
            Column("amplitude_id", BigInteger, nullable=True),
            Column("user_properties", JSONB, nullable=False),
            Column("event_time", _timestamptz(), nullable=False),
            Column("migrated", Boolean, nullable=False, server_default=text("false")),
        )
        Index(
            f"{TMP_TABLE}_unmigrated_idx",
            tmp.c.event_time,
            postgresql_where=tmp.c.migrated.is_(False),
        )
        checkpoints = Table(
            CHECKPOINT_TABLE,
            metadata,
            Column("file_key", Text, primary_key=True),
            Column("etag", Text, nullable=False),
            Column("last_successful_line", BigInteger, nullable=False),
            Column("finished", Boolean, nullable=False, server_default=text("false")),
            Column("updated_at", _timestamptz(), nullable=False, server_default=func.now()),
            # Records committed from this content (all runs), and why its last load stopped:
            # what the metrics of its group say (CONTRACT §8: state, not last push).
            Column("records_loaded", BigInteger, nullable=False, server_default=text("0")),
            Column("last_error", Text, nullable=True),
        )
        return cls(
            metadata=metadata,
            permanent=permanent,
            changeable=changeable,
            tmp=tmp,
            checkpoints=checkpoints,
            permanent_columns=tuple(column.name for column in mappings.permanent),
            changeable_columns=tuple(column.name for column in mappings.changeable),
        )


@dataclass(frozen=True)
class FileCheckpoint:
    file_key: str
    etag: str
    last_successful_line: int
    finished: bool
    records_loaded: int = 0
    """Records committed from this content, over every run that loaded it."""


@dataclass(frozen=True)
class CheckpointGroupState:
    """The checkpoints of a group of files (a directory's files of one date): what its metrics say."""

    files: int = 0
    records_loaded: int = 0
    unfinished: int = 0
    """Files whose load has not reached the end: stuck, or being loaded right now."""
    stopped_by_error: int = 0
    """Unfinished files whose last load stopped with an error."""


@dataclass(frozen=True)
class TmpBacklog:
    """``tmp_user_properties``' unmigrated rows; ``table_exists`` False before the first migration."""

    unmigrated_rows: int
    oldest_unmigrated_event_time: datetime | None
    table_exists: bool = True


@dataclass
class TableWriteCounts:
    candidates: int = 0
    inserted: int = 0
    updated: int = 0

    @property
    def unchanged(self) -> int:
        return self.candidates - self.inserted - self.updated

    def __iadd__(self, other: "TableWriteCounts") -> "TableWriteCounts":
        self.candidates += other.candidates
        self.inserted += other.inserted
        self.updated += other.updated
        return self


@dataclass
class BatchWriteCounts:
    permanent: TableWriteCounts
    changeable: TableWriteCounts

    @classmethod
    def zero(cls) -> "BatchWriteCounts":
        return cls(TableWriteCounts(), TableWriteCounts())

    def __iadd__(self, other: "BatchWriteCounts") -> "BatchWriteCounts":
        self.permanent += other.permanent
        self.changeable += other.changeable
        return self


class DWHRepository:
    """The DWH's tables and every write the pipeline makes, over one SQLAlchemy engine (created
    on first use, closed by :meth:`dispose`).

    ``url`` holds the password (in Dagster it comes from ``EnvVar("DWH_URL")``): the engine is
    told to hide it, and bound parameters, from error messages, and :meth:`redact` takes it out
    of any other text.
    """

    def __init__(self, url: str, db_schema: str = "public", *, mappings: FieldMappings) -> None:
        self.url = url
        self.db_schema = db_schema
        self.mappings = mappings
        self.tables = DWHTables.build(mappings, db_schema)
        self._engine: Engine | None = None
        self._stages: dict[str, Table] = {}

    def __repr__(self) -> str:
        return f"DWHRepository(schema={self.db_schema!r})"  # never the URL: it holds the password

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(checked_dwh_url(self.url), pool_pre_ping=True, hide_parameters=True)
        return self._engine

    def dispose(self) -> None:
        """Close the pooled connections (a run's, when the run ends, rather than when the process does)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def redact(self, text: str) -> str:
        """``text`` without the URL's credentials, whole or in the pieces a parser may split them into."""
        return redact(text, _url_secrets(self.url))

    # -- schema -------------------------------------------------------------------------

    def ensure_schema(self) -> list[str]:
        """Create the schema and tables if missing; add mapped columns the tables lack.

        Additive only: nothing is dropped or retyped. Returns the columns it added. Runs
        under an advisory lock so that concurrent runs don't race each other's DDL.
        """
        added: list[str] = []
        with self.engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_DDL_LOCK)))
            conn.execute(CreateSchema(self.db_schema, if_not_exists=True))
            self.tables.metadata.create_all(conn, checkfirst=True)
            inspector = inspect(conn)
            quote = conn.dialect.identifier_preparer.quote
            for table in (self.tables.permanent, self.tables.changeable, self.tables.checkpoints):
                existing = {column["name"] for column in inspector.get_columns(table.name, self.db_schema)}
                for column in table.columns:
                    if column.name in existing:
                        continue
                    # The column's whole DDL: a NOT NULL column added to existing rows needs its default.
                    conn.execute(
                        text(
                            f"ALTER TABLE {quote(self.db_schema)}.{quote(table.name)} "
                            f"ADD COLUMN {CreateColumn(column).compile(dialect=conn.dialect)}"
                        )
                    )
                    added.append(f"{table.name}.{column.name}")
        return added

    # -- checkpoints --------------------------------------------------------------------

    def get_checkpoint(self, file_key: str) -> FileCheckpoint | None:
        checkpoints = self.tables.checkpoints
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    checkpoints.c.etag,
                    checkpoints.c.last_successful_line,
                    checkpoints.c.finished,
                    checkpoints.c.records_loaded,
                ).where(checkpoints.c.file_key == file_key)
            ).one_or_none()
        if row is None:
            return None
        return FileCheckpoint(file_key, row.etag, row.last_successful_line, row.finished, row.records_loaded)

    def save_checkpoint(self, conn: Connection, checkpoint: FileCheckpoint) -> None:
        checkpoints = self.tables.checkpoints
        statement = pg_insert(checkpoints).values(
            file_key=checkpoint.file_key,
            etag=checkpoint.etag,
            last_successful_line=checkpoint.last_successful_line,
            finished=checkpoint.finished,
            records_loaded=checkpoint.records_loaded,
            last_error=None,
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[checkpoints.c.file_key],
                set_={
                    "etag": statement.excluded.etag,
                    "last_successful_line": statement.excluded.last_successful_line,
                    "finished": statement.excluded.finished,
                    "records_loaded": statement.excluded.records_loaded,
                    "last_error": None,
                    "updated_at": func.now(),
                },
            )
        )

    def record_load_error(self, checkpoint: FileCheckpoint, error_message: str) -> None:
        """Say why a file's load stopped, on its checkpoint (created, unfinished, if it has none)."""
        checkpoints = self.tables.checkpoints
        statement = pg_insert(checkpoints).values(
            file_key=checkpoint.file_key,
            etag=checkpoint.etag,
            last_successful_line=checkpoint.last_successful_line,
            finished=False,
            records_loaded=checkpoint.records_loaded,
            last_error=error_message,
        )
        with self.engine.begin() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[checkpoints.c.file_key],
                    set_={"last_error": statement.excluded.last_error, "updated_at": func.now()},
                    where=checkpoints.c.finished.is_(False),
                )
            )

    def checkpoint_group_state(self, directory: str, belongs: Callable[[str], bool]) -> CheckpointGroupState:
        """The checkpoints of the files directly in ``directory`` for which ``belongs(file_key)``.

        ``belongs`` is the caller's grouping rule (the metrics' labels), applied here to every
        checkpoint of the directory whose name is not ruled out by SQL first.
        """
        checkpoints = self.tables.checkpoints
        prefix = f"{directory}/" if directory else ""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        state = CheckpointGroupState()
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(CHECKPOINT_TABLE, schema=self.db_schema):
                return state
            rows = conn.execute(
                select(
                    checkpoints.c.file_key,
                    checkpoints.c.finished,
                    checkpoints.c.records_loaded,
                    checkpoints.c.last_error.is_not(None).label("errored"),
                ).where(
                    checkpoints.c.file_key.like(f"{escaped}%", escape="\\"),
                    ~checkpoints.c.file_key.like(f"{escaped}%/%", escape="\\"),
                )
            )
            for row in rows:
                if not belongs(row.file_key):
                    continue
                state = CheckpointGroupState(
                    files=state.files + 1,
                    records_loaded=state.records_loaded + row.records_loaded,
                    unfinished=state.unfinished + (not row.finished),
                    stopped_by_error=state.stopped_by_error + (not row.finished and row.errored),
                )
        return state

    def finished_checkpoint_etags(self, keys: Collection[str]) -> dict[str, str]:
        """``{file_key: etag}`` of the keys whose checkpoint says loaded to the end. Reads only; a
        DWH where no load ever ran (no checkpoint table yet) has none."""
        if not keys:
            return {}
        checkpoints = self.tables.checkpoints
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(CHECKPOINT_TABLE, schema=self.db_schema):
                return {}
            remaining = iter(keys)
            while chunk := list(islice(remaining, _LOOKUP_CHUNK)):
                rows = conn.execute(
                    select(checkpoints.c.file_key, checkpoints.c.etag).where(
                        checkpoints.c.file_key.in_(chunk), checkpoints.c.finished
                    )
                )
                found.update({row.file_key: row.etag for row in rows})
        return found

    @contextmanager
    def file_load_lock(self, file_key: str, wait_seconds: float, log: Log | None = None) -> Iterator[bool]:
        """Whether this process may load ``file_key``: a session advisory lock, held on a
        connection of its own until the block ends, so two runs never load one file at once.

        When another run holds it, wait up to ``wait_seconds`` (saying so) for it to finish:
        the file is then usually loaded already, and its checkpoint makes this load a no-op.
        """
        lock_id = (_FILE_LOCK_SPACE, func.hashtext(file_key))
        with self.engine.connect() as conn:
            acquired = bool(conn.execute(select(func.pg_try_advisory_lock(*lock_id))).scalar_one())
            if not acquired and wait_seconds > 0:
                if log is not None:
                    log.info(f"{file_key}: another run is loading it; waiting up to {wait_seconds:.0f} s")
                acquired = _wait_for_advisory_lock(conn, lock_id, wait_seconds)
            conn.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    _release_advisory_lock(conn, file_key)

    # -- tmp_user_properties -----------------------------------------------------------

    def tmp_backlog(self) -> TmpBacklog:
        """How many rows wait, read only: sensors and observations must not create tables."""
        tmp = self.tables.tmp
        with self.engine.connect() as conn:
            exists = conn.execute(
                select(func.to_regclass(f"{_quoted(self.db_schema)}.{_quoted(tmp.name)}"))
            ).scalar()
            if exists is None:
                return TmpBacklog(0, None, table_exists=False)
            count, oldest = conn.execute(
                select(func.count(), func.min(tmp.c.event_time)).where(tmp.c.migrated.is_(False))
            ).one()
        return TmpBacklog(count, oldest)

    def lock_unmigrated_page(self, conn: Connection, page_size: int) -> list[dict[str, Any]]:
        """The oldest unmigrated rows as records (``uuid``, ``amplitude_id``, ``user_properties``,
        ``event_time``), locked for this transaction; rows another migration holds are skipped.

        ``timestamptz`` holds instants Python cannot (``infinity``, years BC or past 9999): such
        an ``event_time`` comes as PostgreSQL's text, for the transform to refuse with the row's
        uuid, instead of failing the whole page as it is read.
        """
        tmp = self.tables.tmp
        readable = and_(
            func.isfinite(tmp.c.event_time),
            tmp.c.event_time >= literal_column("'0001-01-01 00:00:00+00'::timestamptz"),
            tmp.c.event_time < literal_column("'10000-01-01 00:00:00+00'::timestamptz"),
        )
        rows = conn.execute(
            select(
                tmp.c.uuid,
                tmp.c.amplitude_id,
                tmp.c.user_properties,
                case((readable, tmp.c.event_time)).label("event_time"),
                case((readable, None), else_=cast(tmp.c.event_time, Text)).label("unreadable_event_time"),
            )
            .where(tmp.c.migrated.is_(False))
            .order_by(tmp.c.event_time, tmp.c.uuid)
            .limit(page_size)
            .with_for_update(skip_locked=True)
        ).all()
        records = []
        for row in rows:
            record = dict(row._mapping)
            unreadable = record.pop("unreadable_event_time")
            if unreadable is not None:
                record["event_time"] = unreadable
            records.append(record)
        return records

    def mark_migrated(self, conn: Connection, uuids: Sequence[str]) -> None:
        tmp = self.tables.tmp
        conn.execute(update(tmp).where(tmp.c.uuid == func.any(list(uuids))).values(migrated=True))

    # -- batch writes -------------------------------------------------------------------

    def write_batch(self, conn: Connection, batch: ReducedBatch) -> BatchWriteCounts:
        """Merge one reduced batch into both tables inside the caller's transaction.

        Merges take a transaction-level advisory lock first: two loads over the same users
        (neighbouring weeks, the S3 files and the tmp table) would otherwise lock the same rows
        in different orders and deadlock. Only the merges queue behind each other; reading,
        parsing and COPYing into staging tables go on in parallel.
        """
        conn.execute(select(func.pg_advisory_xact_lock(_MERGE_LOCK)))
        return BatchWriteCounts(
            permanent=self._merge_permanent(conn, batch),
            changeable=self._merge_changeable(conn, batch),
        )

    def _merge_permanent(self, conn: Connection, batch: ReducedBatch) -> TableWriteCounts:
        """One upsert: a new user's row is inserted, a stored row has its NULLs filled.

        An upsert finds each stored row through the primary key; an ``UPDATE … FROM`` the
        staged rows was planned as a hash join over the whole table, which grew with the table
        (a week of 400,000 users: 0.16 s a batch to find the few rows with a NULL to fill).
        """
        rows = batch.permanent_rows()
        counts = TableWriteCounts(candidates=len(rows) + batch.permanent_known)
        if not rows:
            return counts
        target = self.tables.permanent
        value_columns = self.tables.permanent_columns
        stage_columns = ("ehr_id", *value_columns, "uuid", "event_time")
        stage = self._stage(conn, target, "stage_permanent", stage_columns, ())
        _copy_rows(conn, stage.name, stage_columns, (row.as_row() for row in rows))
        staged = pg_insert(target).from_select(
            stage_columns, select(*(stage.c[name] for name in stage_columns))
        )
        if value_columns:
            offered = staged.excluded
            merge = staged.on_conflict_do_update(
                index_elements=[target.c.ehr_id],
                set_={name: func.coalesce(target.c[name], offered[name]) for name in value_columns}
                | {"loaded_at": func.now()},
                where=or_(
                    *(and_(target.c[name].is_(None), offered[name].is_not(None)) for name in value_columns)
                ),
            )
        else:
            merge = staged.on_conflict_do_nothing(index_elements=[target.c.ehr_id])
        counts.inserted, counts.updated = _inserted_and_updated(conn, merge, target)
        stage.drop(conn)
        return counts

    def _merge_changeable(self, conn: Connection, batch: ReducedBatch) -> TableWriteCounts:
        """The batch's users' stored versions are read first (the merge lock keeps them as read
        until the commit), the batch resolves its rows against them, and only new and replaced
        rows are written: the new ones inserted, the replaced ones upserted (found through the
        identity's unique index, as in :meth:`_merge_permanent`)."""
        counts = TableWriteCounts(candidates=batch.users)
        if not batch.users:
            return counts
        rows: list[ChangeableRow] = []
        ehr_ids, amplitude_ids = batch.user_keys()
        keys_of_kind: tuple[tuple[str, list[Any]], ...] = (
            ("ehr_id", ehr_ids),
            ("amplitude_id", amplitude_ids),
        )
        for identity, keys in keys_of_kind:
            # A page of users at a time: a batch's stored versions all at once were tens of MiB.
            for start in range(0, len(keys), STORED_VERSIONS_PAGE):
                page = keys[start : start + STORED_VERSIONS_PAGE]
                rows.extend(batch.changeable_rows(self._stored_versions(conn, identity, page), page))
        if not rows:
            return counts
        target = self.tables.changeable
        row_columns = ("ehr_id", "amplitude_id", *self.tables.changeable_columns, "uuid", "event_time")
        stage = self._stage(
            conn, target, "stage_changeable", row_columns, (Column("replaces_stored", Boolean),)
        )
        _copy_rows(
            conn,
            stage.name,
            (*row_columns, "replaces_stored"),
            ((*row.as_row(), row.replaces_stored) for row in rows),
        )
        for identity, is_anonymous in (("ehr_id", False), ("amplitude_id", True)):
            stage_rows = stage.c.ehr_id.is_(None) if is_anonymous else stage.c.ehr_id.is_not(None)
            target_rows = target.c.ehr_id.is_(None) if is_anonymous else target.c.ehr_id.is_not(None)
            for replacing in (False, True):
                staged = pg_insert(target).from_select(
                    row_columns,
                    select(*(stage.c[name] for name in row_columns)).where(
                        stage_rows, stage.c.replaces_stored.is_(replacing)
                    ),
                )
                if replacing:
                    merge = staged.on_conflict_do_update(
                        index_elements=[target.c[identity]],
                        index_where=target_rows,
                        set_={name: staged.excluded[name] for name in row_columns if name != identity}
                        | {"loaded_at": func.now()},
                    )
                else:
                    merge = staged.on_conflict_do_nothing(
                        index_elements=[target.c[identity]], index_where=target_rows
                    )
                inserted, updated = _inserted_and_updated(conn, merge, target)
                counts.inserted += inserted
                counts.updated += updated
        stage.drop(conn)
        return counts

    def _stored_versions(
        self, conn: Connection, identity: str, keys: list[Any]
    ) -> dict[UserKey, StoredVersion]:
        """The changeable values and ``event_time`` of the rows these users (``ehr_id``\\ s, or the
        ``amplitude_id``\\ s of anonymous users) have now.

        Read through the driver's cursor: a batch asks for tens of thousands of rows, and
        psycopg's own row making costs a fraction of SQLAlchemy's per-row processing. The keys
        go as one JSON array (orjson writes it in C), not as an array parameter, which psycopg
        dumps element by element in Python (2 s of a 2.2-million-event load).
        """
        anonymous = identity == "amplitude_id"
        statement = sql.SQL(
            "SELECT {identity}, event_time{sep}{columns} FROM {table} WHERE {kind} AND {identity} = "
            "ANY(ARRAY(SELECT CAST(key AS {key_type}) FROM jsonb_array_elements_text(%s::jsonb) AS key))"
        ).format(
            identity=sql.Identifier(identity),
            sep=sql.SQL(", " if self.tables.changeable_columns else ""),
            columns=sql.SQL(", ").join(sql.Identifier(name) for name in self.tables.changeable_columns),
            table=sql.Identifier(self.db_schema, CHANGEABLE_TABLE),
            kind=sql.SQL("ehr_id IS NULL" if anonymous else "ehr_id IS NOT NULL"),
            key_type=sql.SQL("bigint" if anonymous else "text"),
        )
        with _driver_connection(conn).cursor() as cursor:
            cursor.execute(statement, (orjson.dumps(keys).decode(),))
            return {row[0]: StoredVersion(row[2:], row[1]) for row in cursor}

    def _stage(
        self,
        conn: Connection,
        target: Table,
        name: str,
        columns: Sequence[str],
        extra: Sequence[Column[Any]],
    ) -> Table:
        """A temporary table with the target's column types; the caller drops it after use (one
        transaction may write several batches), and the transaction's end drops it in any case.

        Its definition is made once, so that the statements over it are compiled once (SQLAlchemy's
        statement cache), not for every batch.
        """
        stage = self._stages.get(name)
        if stage is None:
            stage = self._stages[name] = Table(
                name,
                MetaData(),
                *(Column(column, target.c[column].type) for column in columns),
                *extra,
                prefixes=["TEMPORARY"],
                postgresql_on_commit="DROP",
            )
        stage.create(conn)
        return stage

    # -- transactions -------------------------------------------------------------------

    def run_in_transaction(self, work: Callable[[Connection], T], log: Log | None = None) -> T:
        """Run ``work`` in one transaction; run the whole transaction again (with backoff) when it
        fails for a transient reason: a lost connection, a server restart, a deadlock."""
        transaction = retrying("DWH transaction", is_transient_db_error, log=log)
        return transaction(self._run_once, work)

    def _run_once(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            # A load trusts its checkpoint once the commit returns: a server that acknowledges
            # commits before they are durable (synchronous_commit = off, a common speed setting)
            # would lose a batch and its checkpoint in a crash while the load went on after it.
            # One WAL flush per batch is what durability costs here.
            conn.execute(text("SET LOCAL synchronous_commit = on"))
            return work(conn)

    def count_rows(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


_LOOKUP_CHUNK = 1000  # keys per query: an IN list of bounded size
STORED_VERSIONS_PAGE = 20_000  # users whose stored versions are read at a time (a few MiB)
_ADVISORY_DDL_LOCK = 0x616D706C  # "ampl"
_FILE_LOCK_SPACE = 0x66696C65  # "file"
_MERGE_LOCK = 0x6D657267  # "merg"
_LOCK_NOT_AVAILABLE = "55P03"


class DWHConfigurationError(ValueError):
    """``DWH_URL`` cannot be used; the message says why without repeating any part of it."""


def checked_dwh_url(raw_url: str) -> URL:
    """Parse ``DWH_URL``, refusing what would send a piece of the password elsewhere.

    An unescaped ``@`` in the password makes every parser take the rest of the password for
    the host name, which the driver then puts in its "failed to resolve host" error.
    """
    try:
        url = make_url(raw_url)
    except ArgumentError:
        raise DWHConfigurationError(
            "DWH_URL is not a database URL: expected postgresql+psycopg://user:password@host:port/database"
        ) from None
    if "@" in (url.host or "") or raw_url.partition("://")[2].split("/", 1)[0].count("@") > 1:
        raise DWHConfigurationError(
            "DWH_URL has more than one '@' before the host name: percent-encode '@' in the user name "
            "or password as %40 (and ':' as %3A, '/' as %2F)"
        )
    if url.get_driver_name() != "psycopg":
        raise DWHConfigurationError(
            f"DWH_URL must use the psycopg 3 driver (postgresql+psycopg://…), whose COPY the loader "
            f"needs; it names the driver {url.get_driver_name()!r}"
        )
    return url


def _url_secrets(raw_url: str) -> list[str]:
    """The URL's password, the raw text between ``user:`` and the last ``@``, and that text's
    ``@``-separated pieces: whatever part of the credentials an error message may quote."""
    authority = raw_url.partition("://")[2].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    raw_password = userinfo.partition(":")[2]
    pieces = [piece for piece in raw_password.split("@") if len(piece) >= 4]
    try:
        parsed_password = make_url(raw_url).password
    except ArgumentError:
        parsed_password = None
    return [raw_password, *pieces, *([str(parsed_password)] if parsed_password else [])]


def _wait_for_advisory_lock(conn: Connection, lock_id: tuple[Any, ...], wait_seconds: float) -> bool:
    """Block on the lock for at most ``wait_seconds`` (PostgreSQL's ``lock_timeout``)."""
    conn.execute(text(f"SET lock_timeout = {max(1, round(wait_seconds * 1000))}"))
    try:
        with conn.begin_nested():
            conn.execute(select(func.pg_advisory_lock(*lock_id)))
        return True
    except DBAPIError as error:
        if _sqlstate(error) != _LOCK_NOT_AVAILABLE:
            raise
        return False
    finally:
        conn.execute(text("RESET lock_timeout"))


def _release_advisory_lock(conn: Connection, file_key: str) -> None:
    """Unlock, unless the server already did: a lost connection (a restart the load rode out)
    takes its session's locks with it, and must not fail a load that has finished."""
    try:
        conn.execute(select(func.pg_advisory_unlock(_FILE_LOCK_SPACE, func.hashtext(file_key))))
        conn.commit()
    except DBAPIError as error:
        if not is_transient_db_error(error):
            raise


def _driver_error(error: BaseException) -> BaseException:
    """The driver's exception: SQLAlchemy wraps it, COPY through the driver connection does not."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return error.orig
    return error


def _sqlstate(error: BaseException) -> str | None:
    return getattr(_driver_error(error), "sqlstate", None)


def is_transient_db_error(error: BaseException) -> bool:
    """Whether running the same transaction again may succeed."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    sqlstate = _sqlstate(error)
    if sqlstate is None:
        # A driver error without a SQLSTATE never reached the server: the connection broke.
        return isinstance(_driver_error(error), psycopg.OperationalError)
    return sqlstate in _TRANSIENT_SQLSTATES or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def is_db_error(error: BaseException) -> bool:
    """Whether the database (or the way to it) raised ``error``, rather than the program."""
    return isinstance(_driver_error(error), psycopg.Error)


def is_record_level_db_error(error: BaseException) -> bool:
    """Whether the database refused some record's values (rather than the connection or the SQL)."""
    sqlstate = _sqlstate(error)
    return sqlstate is not None and sqlstate[:2] in _RECORD_LEVEL_SQLSTATE_CLASSES


def describe_db_error(error: BaseException) -> str:
    """The driver's own message (SQLAlchemy's wrapping adds only noise), on one readable line."""
    cause = _driver_error(error)
    return shorten(" ".join(f"{type(cause).__name__}: {cause}".split()))


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _inserted_and_updated(conn: Connection, upsert: Insert, target: Table) -> tuple[int, int]:
    """The rows an upsert inserted and those it updated (a row it inserts has no ``xmax`` yet)."""
    written = upsert.returning(literal_column(f"{_quoted(target.name)}.xmax = 0").label("inserted")).cte(
        "written"
    )
    inserted = func.count().filter(written.c.inserted)
    row = conn.execute(select(inserted, func.count() - inserted).select_from(written)).one()
    return row[0], row[1]


def _driver_connection(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection), (
        "the DWH needs the psycopg (3) driver: postgresql+psycopg://"
    )
    return driver


def _copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY rows into a table through the connection's psycopg driver connection."""
    driver = _driver_connection(conn)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    )
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
