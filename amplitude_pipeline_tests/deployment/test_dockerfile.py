"""deploy/Dockerfile, read rather than built (no container engine here): its essentials agree with
pyproject.toml and with the chart's user deployment in deploy/helm/values.yaml (issue 16)."""

import json
import re
import tomllib
from pathlib import PurePosixPath

from amplitude_pipeline_tests.deployment.helm_chart import ChartRelease, load_values
from amplitude_pipeline_tests.support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
CODE_LOCATION = "amplitude-pipeline"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical_lines: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical_lines.append(pending + line)
        pending = ""
    assert not pending, f"{DOCKERFILE}: ends inside a continued line"
    parsed = []
    for logical_line in logical_lines:
        instruction, _, arguments = logical_line.strip().partition(" ")
        parsed.append((instruction.upper(), arguments.strip()))
    return parsed


def arguments_of(instruction: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == instruction]


def environment() -> dict[str, str]:
    variables: dict[str, str] = {}
    for arguments in arguments_of("ENV"):
        variables.update(re.findall(r"(\w+)=(\S+)", arguments))
    return variables


def test_the_image_is_python_3_11_slim_with_the_project_installed_without_its_dev_extra():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    [base] = arguments_of("FROM")
    assert base == "python:3.11-slim"

    [install] = [run for run in arguments_of("RUN") if "pip install" in run]
    extras = re.fullmatch(r'pip install "\.(?:\[(?P<extras>[\w,]+)\])?"', install)
    assert extras, f"{DOCKERFILE}: the project is not installed from '.': {install!r}"
    installed_extras = set((extras["extras"] or "").split(",")) - {""}
    assert "dev" not in installed_extras
    optional = pyproject["project"]["optional-dependencies"]
    assert installed_extras <= optional.keys()
    installed = [dependency for extra in installed_extras for dependency in optional[extra]]
    # The K8sRunLauncher's package, of the integration line that moves with dagster's own:
    # dagster 1.M.P goes with integrations 0.(M+16).P.
    [dagster_pin] = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("dagster==")]
    _, minor, patch = dagster_pin.removeprefix("dagster==").split(".")
    assert f"dagster-k8s==0.{int(minor) + 16}.{patch}" in installed


def test_the_image_runs_as_a_numeric_non_root_user():
    user = arguments_of("USER")[-1]
    assert user.isdigit() and int(user) != 0
    assert any(f"--uid {user}" in run for run in arguments_of("RUN"))


def test_the_image_names_the_field_mappings_file_it_contains():
    [workdir] = arguments_of("WORKDIR")
    copied = [arguments.split() for arguments in arguments_of("COPY")]
    assert ["field_mappings.yaml", "./"] in copied
    assert environment()["FIELD_MAPPINGS_PATH"] == str(PurePosixPath(workdir) / "field_mappings.yaml")


def test_the_image_serves_the_code_location_as_the_charts_user_deployment_does():
    release = ChartRelease(load_values())
    deployment = release.user_deployment(CODE_LOCATION)
    [exposed] = arguments_of("EXPOSE")
    assert int(exposed) == deployment["port"]
    [command] = arguments_of("CMD")
    assert json.loads(command) == release.code_server_args(deployment)
    assert not arguments_of("ENTRYPOINT"), "the chart's args would be appended to it"
