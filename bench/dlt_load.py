"""The dlt baseline: the same records, merged by dlt into PostgreSQL (runs in ``bench/.venv-dlt``).

    bench/.venv-dlt/bin/python bench/dlt_load.py WEEK_FILE SCHEMA

Every line goes through the project's ``transform_single_record`` (imported from the checkout),
then into two tables with dlt's default ``merge`` (``delete-insert``) on the user key and a
``dedup_sort`` on ``event_time``: the permanent rows keep the earliest record per ``ehr_id``,
the changeable rows the latest per user (``ehr_id``, else ``a:<amplitude_id>``). dlt's merge
replaces whole rows, so its rules are simpler than CONTRACT §6 (no first-non-NULL fill, no "only
when a value differs"): the comparison is of throughput, not of semantics. Prints one JSON line
with the events and the seconds of ``pipeline.run`` (extract + normalize + load), and the
seconds of each of dlt's steps.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROWS_PER_ITEM = 1000


def _import_transform() -> Any:
    """The project's transform modules, from the checkout (importing them imports no Dagster, which
    this virtualenv does not have)."""
    sys.path.insert(0, str(REPO))
    from amplitude_pipeline.transform import mapping, records

    return mapping, records


def _dsn() -> str:
    return os.environ["DWH_URL"].replace("postgresql+psycopg://", "postgresql://", 1)


def main() -> None:
    week_file, schema = Path(sys.argv[1]), sys.argv[2]
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    mapping, records = _import_transform()
    import dlt
    import orjson

    mappings = mapping.load_field_mappings(
        os.environ.get("FIELD_MAPPINGS_PATH", REPO / "field_mappings.yaml")
    )
    permanent_columns = [column.name for column in mappings.permanent]
    changeable_columns = [column.name for column in mappings.changeable]
    counted = {"events": 0}

    def rows() -> Iterator[Any]:
        memo = records.UserPropertiesMemo()
        permanent: list[dict[str, Any]] = []
        changeable: list[dict[str, Any]] = []
        with gzip.open(week_file, "rb") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = records.transform_single_record(orjson.loads(line), mappings, memo)
                counted["events"] += 1
                if record.ehr_id is not None:
                    permanent.append(
                        {
                            "ehr_id": record.ehr_id,
                            **dict(zip(permanent_columns, record.permanent, strict=True)),
                            "uuid": record.uuid,
                            "event_time": record.event_time,
                        }
                    )
                    key = record.ehr_id
                elif record.amplitude_id is not None:
                    key = f"a:{record.amplitude_id}"
                else:
                    continue
                changeable.append(
                    {
                        "user_key": key,
                        "ehr_id": record.ehr_id,
                        "amplitude_id": record.amplitude_id,
                        **dict(zip(changeable_columns, record.changeable, strict=True)),
                        "uuid": record.uuid,
                        "event_time": record.event_time,
                    }
                )
                if len(changeable) >= ROWS_PER_ITEM:
                    yield from flush(permanent, changeable)
        yield from flush(permanent, changeable)

    first_flush = {"permanent_user_properties": True, "changeble_user_properties": True}
    table_hints = {
        "permanent_user_properties": dlt.mark.make_hints(
            table_name="permanent_user_properties",
            primary_key="ehr_id",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            columns={"event_time": {"dedup_sort": "asc"}},
        ),
        "changeble_user_properties": dlt.mark.make_hints(
            table_name="changeble_user_properties",
            primary_key="user_key",
            write_disposition={"disposition": "merge", "strategy": "delete-insert"},
            columns={"event_time": {"dedup_sort": "desc"}},
        ),
    }

    def flush(permanent: list[dict[str, Any]], changeable: list[dict[str, Any]]) -> Iterator[Any]:
        for table, items in (
            ("permanent_user_properties", permanent),
            ("changeble_user_properties", changeable),
        ):
            if not items:
                continue
            batch = list(items)
            items.clear()
            if first_flush[table]:
                first_flush[table] = False
                yield dlt.mark.with_hints(batch, table_hints[table], create_table_variant=True)
            else:
                yield dlt.mark.with_table_name(batch, table)

    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as pipelines_dir:
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{schema}",
            pipelines_dir=pipelines_dir,
            destination=dlt.destinations.postgres(credentials=_dsn()),
            dataset_name=schema,
        )
        started = time.perf_counter()
        pipeline.run(dlt.resource(rows, name="user_properties"))
        seconds = time.perf_counter() - started
        steps = {
            step.step: (step.finished_at - step.started_at).total_seconds()
            for step in pipeline.last_trace.steps
        }
    print(
        json.dumps(
            {
                "events": counted["events"],
                "seconds": round(seconds, 3),
                "dlt_steps_seconds": {name: round(value, 3) for name, value in steps.items()},
                "dlt_version": dlt.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
