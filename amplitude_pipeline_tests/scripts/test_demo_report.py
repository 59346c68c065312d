"""``scripts/demo_report.py``: the sample rows it prints sit under their column headers."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from amplitude_pipeline_tests.scripts.support import REPO_ROOT


def demo_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_report", REPO_ROOT / "scripts" / "demo_report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_are_printed_under_their_headers_in_columns_as_wide_as_their_widest_value() -> None:
    lines = demo_report().table_lines(
        ["ehr_id", "age", "city"], [("E1", 34, "Kazan"), ("E22", None, "Nizhny Novgorod")]
    )
    assert lines == [
        "  ehr_id | age  | city",
        "  -------+------+----------------",
        "  E1     | 34   | Kazan",
        "  E22    | NULL | Nizhny Novgorod",
    ]


def test_a_table_without_rows_still_shows_its_headers() -> None:
    assert demo_report().table_lines(["ehr_id", "gender"], []) == ["  ehr_id | gender", "  -------+-------"]
