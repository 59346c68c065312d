"""The baselines measured in a process of their own: ``python -m bench.stages STAGE ...``.

- ``ceiling``: what any loader must do and nothing else: read the object from S3, gunzip
  (the project's read-ahead ``iter_gzip_lines``), orjson-parse every line, keep the latest
  event per user in a dict, COPY those rows (user key, uuid, event_time, user_properties as
  jsonb) into a fresh table with a primary key on the user key.
- ``naive``: the seed's loader: per record, in its own transaction, SELECT the user's current
  row of each table, compare in Python, INSERT or UPDATE, one statement each (psycopg 3), into
  the project's own tables (created by ``DWHRepository.ensure_schema``). The same
  ``transform_single_record`` (with its memo) as the real loader: only the write path differs.
- ``raw_copy``: the floor of an export: the seven day requests' response bodies, bytes only,
  streamed into one S3 multipart upload (the project's part size and concurrency); no zip
  handling.

Each prints one JSON line: ``events``, ``seconds`` (the work alone: imports, connections and
DDL before the clock starts) and what it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
# The project's multipart settings (amplitude_pipeline.storage.s3): 64 MiB parts, 4 at a time.
PART_SIZE = 64 * 1024 * 1024
MAX_CONCURRENCY = 4


def dsn() -> str:
    return os.environ["DWH_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


def _store(prefix: str) -> Any:
    from amplitude_pipeline.storage.s3 import RawEventStore, s3_client

    client = s3_client(os.environ.get("S3_ENDPOINT_URL"), os.environ.get("AWS_REGION"))
    return RawEventStore(os.environ["S3_BUCKET"], prefix, client)


def ceiling(key: str, schema: str) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    store = _store(key.rsplit("/", 1)[0])
    with psycopg.connect(dsn()) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        table = sql.Identifier(schema, "latest_user_properties")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (user_key text PRIMARY KEY, uuid uuid NOT NULL, "
                "event_time timestamptz NOT NULL, user_properties jsonb NOT NULL)"
            ).format(table)
        )
        conn.commit()
        started = time.perf_counter()
        loads = orjson.loads
        latest: dict[Any, tuple[str, str, Any]] = {}
        events = 0
        with store.open_lines(key) as (_, lines):
            for line in lines:
                if not line:
                    continue
                event = loads(line)
                properties = event["user_properties"]
                user = properties.get("ehr_id") or event["amplitude_id"]
                event_time = event["event_time"]
                current = latest.get(user)
                if current is None or event_time >= current[0]:
                    latest[user] = (event_time, event["uuid"], properties)
                events += 1
        with (
            conn.cursor() as cursor,
            cursor.copy(
                sql.SQL("COPY {} (user_key, uuid, event_time, user_properties) FROM STDIN").format(table)
            ) as copy,
        ):
            for user, (event_time, event_uuid, properties) in latest.items():
                copy.write_row((str(user), event_uuid, event_time, orjson.dumps(properties).decode()))
        conn.commit()
        seconds = time.perf_counter() - started
    return {"events": events, "seconds": round(seconds, 3), "rows": len(latest)}


def naive(key: str, schema: str) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    from amplitude_pipeline.storage.dwh import CHANGEABLE_TABLE, PERMANENT_TABLE, DWHRepository
    from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
    from amplitude_pipeline.transform.records import UserPropertiesMemo, transform_single_record

    store = _store(key.rsplit("/", 1)[0])
    dwh = DWHRepository(
        url=os.environ["DWH_URL"],
        db_schema=schema,
        mappings=load_field_mappings_once(str(REPO / "field_mappings.yaml")),
    )
    dwh.ensure_schema()
    dwh.engine.dispose()
    mappings = dwh.mappings
    permanent_columns = list(dwh.tables.permanent_columns)
    changeable_columns = list(dwh.tables.changeable_columns)

    def names(columns: list[str]) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, columns))

    def placeholders(count: int) -> sql.Composable:
        return sql.SQL(", ").join([sql.Placeholder()] * count)

    permanent = sql.Identifier(schema, PERMANENT_TABLE)
    changeable = sql.Identifier(schema, CHANGEABLE_TABLE)
    select_permanent = sql.SQL("SELECT {} FROM {} WHERE ehr_id = %s").format(
        names(permanent_columns), permanent
    )
    insert_permanent_columns = ["ehr_id", *permanent_columns, "uuid", "event_time"]
    insert_permanent = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        permanent, names(insert_permanent_columns), placeholders(len(insert_permanent_columns))
    )
    update_permanent = sql.SQL("UPDATE {} SET {}, loaded_at = now() WHERE ehr_id = %s").format(
        permanent, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in permanent_columns)
    )
    changeable_values = [*changeable_columns, "event_time"]
    select_changeable_by_ehr = sql.SQL("SELECT {} FROM {} WHERE ehr_id = %s").format(
        names(changeable_values), changeable
    )
    select_changeable_by_amplitude = sql.SQL(
        "SELECT {} FROM {} WHERE amplitude_id = %s AND ehr_id IS NULL"
    ).format(names(changeable_values), changeable)
    insert_changeable_columns = ["ehr_id", "amplitude_id", *changeable_columns, "uuid", "event_time"]
    insert_changeable = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        changeable, names(insert_changeable_columns), placeholders(len(insert_changeable_columns))
    )
    set_changeable = sql.SQL(", ").join(
        sql.SQL("{} = %s").format(sql.Identifier(c)) for c in [*changeable_columns, "uuid", "event_time"]
    )
    update_changeable_by_ehr = sql.SQL("UPDATE {} SET {}, loaded_at = now() WHERE ehr_id = %s").format(
        changeable, set_changeable
    )
    update_changeable_by_amplitude = sql.SQL(
        "UPDATE {} SET {}, loaded_at = now() WHERE amplitude_id = %s AND ehr_id IS NULL"
    ).format(changeable, set_changeable)

    memo = UserPropertiesMemo()
    user: str | int
    counts = {"events": 0, "inserted": 0, "updated": 0, "statements": 0}
    with psycopg.connect(dsn()) as conn, conn.cursor() as cursor:
        # Composed once: the loop sends the same texts, which psycopg prepares after 5 uses.
        texts: dict[int, str] = {}
        started = time.perf_counter()

        def execute(statement: sql.Composable, params: tuple[Any, ...]) -> None:
            counts["statements"] += 1
            text = texts.get(id(statement))
            if text is None:
                text = texts[id(statement)] = statement.as_string(conn)
            cursor.execute(text, params)

        with store.open_lines(key) as (_, lines):
            for line in lines:
                if not line:
                    continue
                record = transform_single_record(orjson.loads(line), mappings, memo)
                counts["events"] += 1
                with conn.transaction():
                    if record.ehr_id is not None:
                        execute(select_permanent, (record.ehr_id,))
                        row = cursor.fetchone()
                        if row is None:
                            execute(
                                insert_permanent,
                                (record.ehr_id, *record.permanent, record.uuid, record.event_time),
                            )
                            counts["inserted"] += 1
                        else:
                            filled = tuple(
                                old if old is not None else new
                                for old, new in zip(row, record.permanent, strict=True)
                            )
                            if filled != tuple(row):
                                execute(update_permanent, (*filled, record.ehr_id))
                                counts["updated"] += 1
                        select, update, user = (
                            select_changeable_by_ehr,
                            update_changeable_by_ehr,
                            record.ehr_id,
                        )
                    elif record.amplitude_id is not None:
                        select, update = select_changeable_by_amplitude, update_changeable_by_amplitude
                        user = record.amplitude_id
                    else:
                        continue
                    execute(select, (user,))
                    row = cursor.fetchone()
                    if row is None:
                        execute(
                            insert_changeable,
                            (
                                record.ehr_id,
                                record.amplitude_id,
                                *record.changeable,
                                record.uuid,
                                record.event_time,
                            ),
                        )
                        counts["inserted"] += 1
                    elif record.event_time > row[-1] and tuple(record.changeable) != tuple(row[:-1]):
                        execute(update, (*record.changeable, record.uuid, record.event_time, user))
                        counts["updated"] += 1
        seconds = time.perf_counter() - started
    return {**counts, "seconds": round(seconds, 3)}


class _ChainedBodies:
    """The response bodies of several requests, read one after another as one stream."""

    def __init__(self, bodies: Iterator[Any]) -> None:
        self._bodies = bodies
        self._current: Any = next(bodies, None)
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, fewer only at the end: s3transfer takes a short read for the end
        of a stream it does not know the length of."""
        wanted = size if size is not None and size > 0 else 1 << 62
        pieces: list[bytes] = []
        got = 0
        while self._current is not None and got < wanted:
            data = self._current.read(min(wanted - got, PART_SIZE))
            if data:
                pieces.append(bytes(data))
                got += len(data)
                continue
            self._current.close()
            self._current = next(self._bodies, None)
        self.bytes += got
        return b"".join(pieces)


def raw_copy(week: str, key: str) -> dict[str, Any]:
    import boto3
    import requests
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    monday = date.fromisoformat(week)
    session = requests.Session()
    auth = (os.environ["AMPLITUDE_API_KEY"], os.environ["AMPLITUDE_SECRET_KEY"])
    client = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION"),
        config=Config(retries={"mode": "standard", "max_attempts": 6}),
    )

    def bodies() -> Iterator[Any]:
        for offset in range(7):
            day = (monday + timedelta(days=offset)).strftime("%Y%m%d")
            response = session.get(
                os.environ["AMPLITUDE_EXPORT_URL"],
                params={"start": f"{day}T00", "end": f"{day}T23"},
                auth=auth,
                stream=True,
                timeout=(30, 300),
            )
            response.raise_for_status()
            yield response.raw

    started = time.perf_counter()
    stream = _ChainedBodies(bodies())
    client.upload_fileobj(
        stream,  # type: ignore[arg-type]  # read() is all upload_fileobj uses
        os.environ["S3_BUCKET"],
        key,
        Config=TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=MAX_CONCURRENCY
        ),
    )
    seconds = time.perf_counter() - started
    return {"bytes": stream.bytes, "seconds": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stages")
    parser.add_argument("stage", choices=("ceiling", "naive", "raw_copy"))
    parser.add_argument("--key", required=True, help="the object's S3 key")
    parser.add_argument("--schema", help="a fresh DWH schema (ceiling, naive)")
    parser.add_argument("--week", help="the week's Monday (raw_copy)")
    args = parser.parse_args()
    if args.stage == "raw_copy":
        result = raw_copy(args.week, args.key)
    elif args.stage == "ceiling":
        result = ceiling(args.key, args.schema)
    else:
        result = naive(args.key, args.schema)
    print(json.dumps(result), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
