"""PostgreSQL restarted with ``pg_ctl restart -m immediate`` in the middle of a load (issue 9): the
run rides it out, and the tables equal a clean run's, row for row.

Risk: this restarts the local stack's PostgreSQL (``scripts/stack.sh restart-postgres``, once, with
the stack's own options; about a second), which every integration test and the Dagster instance
of ``scripts/dev.sh`` share. Their connections drop: the pipeline's own code retries, but a test
running at the same moment in another process may fail with a lost connection. CI runs the tests
one at a time, so there only this test sees the restart. The load itself runs in a Dagster
instance of its own (SQLite), so only the DWH side is exercised.
"""

import re
import subprocess
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from amplitude_pipeline.load.event_files import load_event_file
from amplitude_pipeline.storage.dwh import DWHRepository
from amplitude_pipeline_tests.faults.support import (
    BATCH_SIZE,
    TablesRun,
    big_week_lines,
    table_rows,
    upload_big_week,
)
from amplitude_pipeline_tests.support import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The warning of a retried DWH transaction (amplitude_pipeline.retries), over the lines of its message.
DWH_RETRY = re.compile(r"DWH transaction: OperationalError: .*?; attempt 1 of \d+ failed, retrying in", re.S)


def checkpoint_updated_at(dwh: DWHRepository, key: str) -> datetime:
    checkpoints = dwh.tables.checkpoints
    with dwh.engine.connect() as conn:
        return conn.execute(
            select(checkpoints.c.updated_at).where(checkpoints.c.file_key == key)
        ).scalar_one()


@pytest.mark.timeout(300)
def test_a_load_rides_out_an_immediate_postgres_restart_and_the_tables_equal_a_clean_runs(
    raw_event_store, new_dwh, tmp_path
):
    key = upload_big_week(raw_event_store)
    lines = len(big_week_lines())
    restarted, clean = new_dwh(), new_dwh()

    run = TablesRun("restarted", tmp_path / "dagster_home", raw_event_store, restarted)
    try:
        before = run.wait_for_committed_batches(restarted, key, 2)
        restart_began = datetime.now(UTC)
        subprocess.run(
            [str(REPO_ROOT / "scripts" / "stack.sh"), "restart-postgres"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        exit_code = run.wait()
    finally:
        run.close()

    assert exit_code == 0, run.output[-5000:]
    assert not before.finished
    after = restarted.get_checkpoint(key)
    assert after is not None
    assert (after.last_successful_line, after.finished) == (lines - 1, True)
    # The restart hit the load, not its aftermath: the run committed batches after it began...
    assert checkpoint_updated_at(restarted, key) > restart_began
    # ... and a batch's transaction failed with the connection and was run again.
    assert DWH_RETRY.search(run.output), run.output[-5000:]
    metadata = run.latest_materialization_metadata("permanent_user_properties")
    assert (metadata["started_after_line"], metadata["records_read"]) == (-1, lines)

    load_event_file(clean, raw_event_store, key, batch_size=BATCH_SIZE)
    expected = table_rows(clean)
    assert len(expected["permanent"]) > 0
    got = table_rows(restarted)
    for table in expected:
        differing = [(a, b) for a, b in zip(got[table], expected[table], strict=False) if a != b]
        assert (len(got[table]), differing[:2]) == (len(expected[table]), []), table
