"""Line 3's ``city`` (a ``str`` column) is one MiB of UTF-8: 524,288 × "я"."""

from amplitude_pipeline_tests.corpus.lines import event_line


def lines() -> list[bytes]:
    return [event_line(i, city="я" * 524_288) if i == 3 else event_line(i) for i in range(5)]
