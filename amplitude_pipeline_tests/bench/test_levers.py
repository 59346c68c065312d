"""bench.levers: every way of reading a week makes the same records."""

from pathlib import Path

import pytest

from bench import datasets, levers


@pytest.mark.parametrize("way", levers.WAYS)
def test_every_way_reads_every_line_of_the_week(
    way: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datasets, "CACHE", tmp_path)
    week = datasets.light_week(1, 150)

    assert levers.count_records(way, week.file) == week.events


def test_an_unknown_way_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert levers.main(["fast", "week.jsonl.gz"]) == 2
    assert "usage" in capsys.readouterr().err
