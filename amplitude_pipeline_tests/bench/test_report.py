"""The benchmark's ratios and verdicts against issue 10's targets."""

from bench.report import Row, Target, format_table, format_targets, targets


def row(stage: str, profile: str, size: str, events: int, seconds: float, rss: float | None = None) -> Row:
    return Row(stage, profile, size, events, seconds, input_bytes=events * 300, peak_rss_mib=rss)


def by_name(items: list[Target]) -> dict[str, Target]:
    return {item.name: item for item in items}


def test_ratios_are_of_events_per_second_and_judged_against_the_targets() -> None:
    rows = [
        row("load", "light", "1x", 100_000, 10.0, rss=300),  # 10k events/s
        row("ceiling", "light", "1x", 100_000, 4.0),  # 25k events/s
        row("naive", "light", "1x", 1_000, 1.0),  # 1k events/s
        row("dlt", "light", "1x", 10_000, 4.0),  # 2.5k events/s
        row("load", "light", "4x", 400_000, 50.0, rss=390),
    ]

    result = by_name(targets(rows, startup_seconds=5.0))

    assert result["load / ceiling, light 1x"].value == 0.4
    assert result["load / ceiling, light 1x"].verdict == "FAIL"
    assert result["load / naive, light"].value == 10.0
    assert result["load / dlt, light"].value == 4.0
    assert result["load / dlt, light"].verdict == "PASS"
    assert result["load peak RSS 4x/1x, light"].value == 1.3
    assert result["load peak RSS 4x/1x, light"].verdict == "FAIL"
    assert result["load peak RSS MiB, light 4x"].verdict == "PASS"
    assert result["table-run start-up seconds"].verdict == "FAIL"
    assert result["load / ceiling, heavy 1x"].verdict == "n/a"


def test_tables_print_every_row_and_target() -> None:
    rows = [row("load", "heavy", "1x", 700_000, 14.0, rss=330)]

    table = format_table(rows)
    verdicts = format_targets(targets(rows, None))

    assert "50,000" in table.splitlines()[2]
    assert "table-run start-up seconds" in verdicts and "n/a" in verdicts
