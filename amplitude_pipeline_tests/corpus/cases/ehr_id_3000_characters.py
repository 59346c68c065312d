"""Line 3's ``ehr_id`` is 3,000 characters: too long for the tables' unique indexes (issue 9, case 3)."""

from amplitude_pipeline_tests.corpus.lines import event_line


def lines() -> list[bytes]:
    return [event_line(i, ehr_id="E" * 3000) if i == 3 else event_line(i) for i in range(5)]
