"""The benchmark's profile summary: cost per event per function, its growth, the flame graph."""

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from bench.profile import compare, flame_graph_svg, load_only, read_collapsed


def test_collapsed_stacks_become_costs_per_event_and_their_growth(tmp_path: Path) -> None:
    small = tmp_path / "small.collapsed"
    small.write_text(
        'process 1:"dagster";main (a.py:1);load (b.py:10);parse (c.py:5) 100\n'
        'process 1:"dagster";main (a.py:1);load (b.py:12);merge (d.py:7) 100\n'
    )
    large = tmp_path / "large.collapsed"
    large.write_text(
        'process 1:"dagster";main (a.py:1);load (b.py:10);parse (c.py:5) 400\n'
        'process 1:"dagster";main (a.py:1);load (b.py:12);merge (d.py:7) 800\n'
    )

    result = compare(("1x", read_collapsed(small), 10_000), ("4x", read_collapsed(large), 40_000))

    # 100 samples at 100 Hz = 1 s over 10,000 events = 100 µs per event.
    assert result["sampled_us_per_event"] == {"1x": 200.0, "4x": 300.0}
    growth = {row["function"]: row["self_growth_us_per_event"] for row in result["top_self_growth"]}
    assert growth["merge (d.py)"] == 100.0
    assert growth["parse (c.py)"] == 0.0
    inclusive = {row["function"]: row["inclusive_us_per_event_4x"] for row in result["top_inclusive"]}
    assert inclusive["load (b.py)"] == 300.0  # two line numbers of one function are one function


def test_flame_graph_is_an_svg_with_a_tooltip_per_frame() -> None:
    svg = flame_graph_svg({("main (a.py:1)", "load (b.py:2)"): 3, ("main (a.py:1)",): 1}, "title & more")

    root = ElementTree.fromstring(svg)
    titles = [element.text for element in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "load (b.py) (3 samples, 75.00%)" in titles
    assert "main (a.py) (4 samples, 100.00%)" in titles


def test_process_frames_keep_their_semicolons_and_the_load_proper_is_told_apart(tmp_path: Path) -> None:
    collapsed = tmp_path / "run.collapsed"
    step = 'process 7:"python -c from multiprocessing.spawn import spawn_main; spawn_main(pipe_handle=9)"'
    collapsed.write_text(
        f"{step};load_event_file (/x/amplitude_pipeline/load/event_files.py:125);parse (c.py:5) 30\n"
        f"{step};Thread.run (threading.py:982);_BatchCommitter._run (amplitude_pipeline/load/event_files.py:360) 5\n"
        f"{step};import_module (importlib/__init__.py:126) 50\n"
    )

    stacks = read_collapsed(collapsed)

    assert all(stack[0] == step for stack in stacks)
    assert sum(load_only(stacks).values()) == 35
