"""Seed tmp_user_properties with rows from the simulated population (demo; idempotent)."""

import argparse
import os
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from amplitude_pipeline.defs.settings import SETTINGS
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_simulator.data import SimulatorConfig
from amplitude_simulator.tmp_rows import tmp_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-01-15")
    args = parser.parse_args()
    dwh = DWHRepository(
        url=os.environ["DWH_URL"],
        db_schema=SETTINGS.dwh_schema,
        mappings=load_field_mappings_once(str(SETTINGS.field_mappings_path)),
    )
    dwh.ensure_schema()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)
    rows = list(tmp_rows(SimulatorConfig(), args.rows, start, end))
    tmp = dwh.tables.tmp
    with dwh.engine.begin() as conn:
        before = conn.execute(select(func.count()).select_from(tmp)).scalar_one()
        conn.execute(insert(tmp).on_conflict_do_nothing(), rows)
        after = conn.execute(select(func.count()).select_from(tmp)).scalar_one()
    print(f"tmp_user_properties: {after - before} of {len(rows)} generated rows were new")
    dwh.engine.dispose()


if __name__ == "__main__":
    main()
