"""Line 3 carries an unknown ``user_properties`` key whose name is 1 MiB long (issue 9, case 5)."""

from amplitude_pipeline_tests.corpus.lines import event_line


def lines() -> list[bytes]:
    return [event_line(i, **{"k" * 1_048_576: "v"}) if i == 3 else event_line(i) for i in range(5)]
