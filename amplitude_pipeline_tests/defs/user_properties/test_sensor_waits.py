"""Which prefixes ``s3_new_objects_sensor`` holds back, from the runs in the instance (no stack needed).

A later run of a prefix must never overtake an earlier one (CONTRACT §3): a prefix waits while a
run of it is in flight, and while its latest run failed or was canceled, until a re-execution of
that run succeeds. The runs here are created in the instance with the tags and statuses a real
run would have; ``test_sensors.py`` re-executes a failed run for real.
"""

from collections.abc import Iterator

import pytest
from dagster import (
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    instance_for_test,
    job,
    op,
)
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from amplitude_pipeline.defs.user_properties.jobs import load_s3_event_files, load_s3_event_files_op
from amplitude_pipeline.defs.user_properties.sensors import (
    IN_FLIGHT_STATUSES,
    PREFIX_TAG,
    prefix_tag_value,
    waiting_prefixes,
)

WATCHED = ("a/", "b/", "")
NO_FILES = {"ops": {load_s3_event_files_op.name: {"config": {"files": []}}}}


@op
def do_nothing() -> None:
    pass


@job
def another_job() -> None:
    do_nothing()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def run_of(instance: DagsterInstance, prefix: str, status: DagsterRunStatus, **tags: str) -> DagsterRun:
    return instance.create_run_for_job(
        load_s3_event_files,
        run_config=NO_FILES,
        tags={PREFIX_TAG: prefix_tag_value(prefix), **tags},
        status=status,
        # Where the daemon would launch it from; Dagster requires one for a queued run.
        remote_job_origin=RemoteJobOrigin(
            RemoteRepositoryOrigin(
                InProcessCodeLocationOrigin(
                    LoadableTargetOrigin(module_name="amplitude_pipeline.definitions")
                ),
                "__repository__",
            ),
            load_s3_event_files.name,
        ),
    )


def report(instance: DagsterInstance, run: DagsterRun, event: DagsterEventType) -> None:
    instance.report_dagster_event(
        DagsterEvent(event_type_value=event.value, job_name=run.job_name), run_id=run.run_id
    )


@pytest.mark.parametrize("status", IN_FLIGHT_STATUSES, ids=lambda status: status.value)
def test_a_run_in_flight_holds_its_prefix_back_and_no_other(instance, status):
    run_of(instance, "a/", DagsterRunStatus.FAILURE)  # an older run: the one in flight is what counts
    in_flight = run_of(instance, "a/", status)
    run_of(instance, "b/", DagsterRunStatus.SUCCESS)

    waiting = waiting_prefixes(instance, WATCHED)

    assert list(waiting) == ["a/"]
    assert waiting["a/"].reason == (
        f"a/ waits for run {in_flight.run_id} ({status.value.lower()}) to finish before its next files"
    )
    assert not waiting["a/"].stuck


@pytest.mark.parametrize(
    "status, said", [(DagsterRunStatus.FAILURE, "failed"), (DagsterRunStatus.CANCELED, "was canceled")]
)
def test_a_stopped_run_holds_its_prefix_until_a_reexecution_of_it_succeeds(instance, status, said):
    run_of(instance, "a/", DagsterRunStatus.SUCCESS)
    stopped = run_of(instance, "a/", status)
    run_of(instance, "b/", DagsterRunStatus.SUCCESS)

    waiting = waiting_prefixes(instance, WATCHED)

    assert list(waiting) == ["a/"]
    assert waiting["a/"].stuck
    assert waiting["a/"].reason == (
        f"a/ waits: run {stopped.run_id} {said}, and the later files of this prefix load only after it; "
        f"fix the cause, then re-execute run {stopped.run_id}: loaded files are skipped, the failed file "
        "resumes after its checkpoint"
    )

    # A re-execution carries its parent's tags.
    first_try = run_of(instance, "a/", DagsterRunStatus.STARTED, **{"dagster/parent_run_id": stopped.run_id})
    assert waiting_prefixes(instance, WATCHED)["a/"].reason.startswith(f"a/ waits for run {first_try.run_id}")
    report(instance, first_try, DagsterEventType.RUN_FAILURE)
    assert f"re-execute run {first_try.run_id}:" in waiting_prefixes(instance, WATCHED)["a/"].reason
    second_try = run_of(
        instance, "a/", DagsterRunStatus.STARTED, **{"dagster/parent_run_id": first_try.run_id}
    )
    report(instance, second_try, DagsterEventType.RUN_SUCCESS)

    assert waiting_prefixes(instance, WATCHED) == {}


def test_only_runs_of_the_load_job_tagged_with_the_prefix_count(instance):
    run_of(instance, "a/b/", DagsterRunStatus.FAILURE)  # a prefix that is not watched
    instance.create_run_for_job(
        load_s3_event_files, run_config=NO_FILES, tags={"some/tag": "a/"}, status=DagsterRunStatus.STARTED
    )
    instance.create_run_for_job(
        another_job, tags={PREFIX_TAG: prefix_tag_value("a/")}, status=DagsterRunStatus.FAILURE
    )

    assert waiting_prefixes(instance, WATCHED) == {}

    whole_bucket = run_of(instance, "", DagsterRunStatus.QUEUED)
    assert whole_bucket.tags[PREFIX_TAG] == "/"
    assert list(waiting_prefixes(instance, WATCHED)) == [""]
    assert waiting_prefixes(instance, WATCHED)[""].reason.startswith("the whole bucket waits for run")
