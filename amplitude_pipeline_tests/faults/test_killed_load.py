"""A load killed with SIGKILL mid-file, then run again (issue 9): the rerun resumes after the last
committed batch, and the tables equal a clean run's, row for row."""

import pytest

from amplitude_pipeline.load.event_files import load_event_file
from amplitude_pipeline.storage.dwh import FileCheckpoint
from amplitude_pipeline_tests.faults.support import (
    BATCH_SIZE,
    TablesRun,
    big_week_lines,
    table_rows,
    upload_big_week,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_a_run_killed_mid_load_is_resumed_by_the_rerun_and_the_tables_equal_a_clean_runs(
    raw_event_store, new_dwh, tmp_path
):
    key = upload_big_week(raw_event_store)
    lines = len(big_week_lines())
    killed, clean = new_dwh(), new_dwh()
    dagster_home = tmp_path / "dagster_home"

    first = TablesRun("killed", dagster_home, raw_event_store, killed)
    try:
        first.wait_for_committed_batches(killed, key, 3)
        first.kill()
    finally:
        first.close()
    at_kill = killed.get_checkpoint(key)
    assert at_kill is not None
    assert not at_kill.finished, "the load finished before it could be killed: make the week bigger"
    assert 3 * BATCH_SIZE - 1 <= at_kill.last_successful_line < lines - 1
    assert (at_kill.last_successful_line + 1) % BATCH_SIZE == 0  # whole batches, nothing of the next

    # The killed run's session (and its lock on the file) ends as soon as the server sees the
    # connection closed; a rerun that comes sooner waits for it.
    rerun = TablesRun("rerun", dagster_home, raw_event_store, killed)
    try:
        exit_code = rerun.wait()
    finally:
        rerun.close()

    assert exit_code == 0, rerun.output[-5000:]
    assert f"resuming at line {at_kill.last_successful_line + 1} " in rerun.output
    for table in ("permanent_user_properties", "changeble_user_properties"):
        metadata = rerun.latest_materialization_metadata(table)
        assert metadata["started_after_line"] == at_kill.last_successful_line
        assert metadata["records_read"] == lines - 1 - at_kill.last_successful_line
        assert metadata["last_successful_line"] == lines - 1
    # Every line counted once across the kill: the records before it and the rerun's.
    assert killed.get_checkpoint(key) == FileCheckpoint(
        key, at_kill.etag, lines - 1, finished=True, records_loaded=lines
    )

    load_event_file(clean, raw_event_store, key, batch_size=BATCH_SIZE)
    expected = table_rows(clean)
    assert len(expected["permanent"]) > 0
    assert len(expected["changeable"]) > 0
    assert table_rows(killed) == expected
