"""The package without Dagster, and the code location through every way Dagster finds it (issue 16)."""

import json
import os
import subprocess
import sys

import pytest

from amplitude_pipeline.definitions import defs as load_code_location
from amplitude_pipeline_tests.support import REPO_ROOT

PLAIN_LAYERS = (
    "amplitude_pipeline",
    "amplitude_pipeline.transform.records",
    "amplitude_pipeline.transform.audit",
    "amplitude_pipeline.load.event_files",
    "amplitude_pipeline.load.tmp_table",
    "amplitude_pipeline.load.s3_discovery",
    "amplitude_pipeline.load.metrics",
    "amplitude_pipeline.storage.dwh",
    "amplitude_pipeline.storage.s3",
    "amplitude_pipeline.amplitude.export",
    "amplitude_pipeline.mapping.cli",
)


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False
    )


def test_the_plain_layers_import_without_dagster():
    imports = "; ".join(f"import {module}" for module in PLAIN_LAYERS)
    done = python(f"import sys; {imports}; print(sorted(m for m in sys.modules if m.startswith('dagster')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_packages_defs_is_the_code_location_even_after_the_defs_subpackage_is_imported():
    # The production instance names a run launcher in amplitude_pipeline.defs: a process that loads
    # the instance imports that subpackage before Dagster looks up amplitude_pipeline.defs.
    done = python(
        "import amplitude_pipeline.defs.run_launcher, amplitude_pipeline; "
        "print(type(amplitude_pipeline.defs).__name__, 'defs' in dir(amplitude_pipeline))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["LazyDefinitions", "True"]


@pytest.mark.slow
def test_dg_lists_every_definition_of_the_code_location():
    done = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "dg"), "list", "defs", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        env={**os.environ, "VIRTUAL_ENV": str(REPO_ROOT / ".venv")},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads(done.stdout)
    defs = load_code_location()
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    assert {item["asset_key"] for item in listed["assets"]} == {
        key.to_user_string() for key in graph.get_all_asset_keys()
    }
    assert {item["key"] for item in listed["asset_checks"]} == {
        key.to_user_string() for key in graph.asset_check_keys
    }
    assert {item["name"] for item in listed["jobs"]} >= {
        "export_amplitude_events",
        "export_amplitude_range",
        "migrate_tmp_user_properties",
        "load_s3_event_files",
    }
    assert {item["name"] for item in listed["sensors"]} == {sensor.name for sensor in repository.sensor_defs}
    assert {item["name"] for item in listed["schedules"]} == {
        schedule.name for schedule in repository.schedule_defs
    }
