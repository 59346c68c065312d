"""``scripts/stack.sh``'s ports: every one set by a ``STACK_*`` variable, each checked before
anything starts.

These tests never touch the running default stack: the refusals are checked with a
``STACK_DIR`` that does not exist (the script must exit before creating it) and with
``PG_BIN``/``VENV_BIN`` pointing nowhere, so even a broken check could start nothing. The one
test that starts services starts a separate stack in its own ``STACK_DIR`` on its own ports and
stops only that.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from amplitude_pipeline_tests.scripts.support import REPO_ROOT, environment_without

STACK = REPO_ROOT / "scripts" / "stack.sh"

DEFAULT_PORTS = {
    "STACK_PG_PORT": 55432,
    "STACK_S3_PORT": 18333,
    "STACK_SIM_PORT": 18080,
    "STACK_PUSHGATEWAY_PORT": 19091,
    "STACK_WEED_MASTER_PORT": 19333,
    "STACK_WEED_VOLUME_PORT": 19340,
    "STACK_WEED_FILER_PORT": 18888,
    "STACK_WEED_ADMIN_PORT": 23646,
    "STACK_S3_GRPC_PORT": 28333,
    "STACK_WEED_MASTER_GRPC_PORT": 29333,
    "STACK_WEED_VOLUME_GRPC_PORT": 29340,
    "STACK_WEED_FILER_GRPC_PORT": 28888,
}


def run_stack(command: str, stack_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``stack.sh command`` with only the given ``STACK_*`` variables, in ``stack_dir``."""
    environment = {
        **environment_without(lambda name: name.startswith("STACK_")),
        "STACK_DIR": str(stack_dir),
        **variables,
    }
    return subprocess.run(
        [str(STACK), command], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def run_refused_start(stack_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """``start`` where nothing could start even if the port check were broken."""
    return run_stack("start", stack_dir, PG_BIN="/nonexistent", VENV_BIN="/nonexistent", **variables)


def printed_ports(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return {name: int(value) for name, value in (line.split("=") for line in result.stdout.splitlines())}


@pytest.fixture
def absent_stack_dir(tmp_path: Path) -> Path:
    """A STACK_DIR that does not exist: a refused command must not create it."""
    return tmp_path / "stack"


def test_ports_lists_every_port_with_its_default(absent_stack_dir: Path) -> None:
    assert printed_ports(run_stack("ports", absent_stack_dir)) == DEFAULT_PORTS


def test_grpc_ports_follow_their_http_port_unless_set(absent_stack_dir: Path) -> None:
    ports = printed_ports(
        run_stack(
            "ports",
            absent_stack_dir,
            STACK_WEED_MASTER_PORT="40000",
            STACK_S3_PORT="41000",
            STACK_S3_GRPC_PORT="42001",
        )
    )
    assert ports == {
        **DEFAULT_PORTS,
        "STACK_WEED_MASTER_PORT": 40000,
        "STACK_WEED_MASTER_GRPC_PORT": 50000,
        "STACK_S3_PORT": 41000,
        "STACK_S3_GRPC_PORT": 42001,
    }


def test_a_high_http_port_works_once_its_grpc_port_is_set(absent_stack_dir: Path) -> None:
    ports = printed_ports(
        run_stack(
            "ports", absent_stack_dir, STACK_WEED_MASTER_PORT="60000", STACK_WEED_MASTER_GRPC_PORT="50000"
        )
    )
    assert (ports["STACK_WEED_MASTER_PORT"], ports["STACK_WEED_MASTER_GRPC_PORT"]) == (60000, 50000)


def test_a_grpc_default_above_65535_is_refused_before_anything_starts(absent_stack_dir: Path) -> None:
    result = run_refused_start(absent_stack_dir, STACK_WEED_MASTER_PORT="60000")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "[stack] refusing to run 'start': bad port settings",
        "[stack]   STACK_WEED_MASTER_GRPC_PORT is unset and defaults to STACK_WEED_MASTER_PORT + 10000"
        " = 70000, above 65535: set STACK_WEED_MASTER_GRPC_PORT",
    ]
    assert not absent_stack_dir.exists()


@pytest.mark.parametrize(
    "value", ["abc", "0", "65536", "99999999", "080", "-1", "1+1", " 5432", "5432 ", "$(id)"]
)
@pytest.mark.parametrize("variable", ["STACK_PG_PORT", "STACK_S3_GRPC_PORT"])
def test_a_value_that_is_not_a_port_is_refused(absent_stack_dir: Path, variable: str, value: str) -> None:
    result = run_refused_start(absent_stack_dir, **{variable: value})
    assert result.returncode == 2
    assert (
        f"[stack]   {variable}={value} is not a port (an integer from 1 to 65535)"
        in result.stderr.splitlines()
    )
    assert not absent_stack_dir.exists()


@pytest.mark.parametrize("command", ["env", "ports"])
def test_every_command_that_uses_the_ports_refuses_bad_ones(absent_stack_dir: Path, command: str) -> None:
    result = run_stack(command, absent_stack_dir, STACK_SIM_PORT="70000")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"refusing to run '{command}'" in result.stderr
    assert not absent_stack_dir.exists()


def test_the_admin_port_stays_below_55535_because_its_grpc_port_cannot_move(absent_stack_dir: Path) -> None:
    """weed mini's maintenance worker dials the admin's gRPC at the admin port + 10000, whatever
    ``-admin.port.grpc`` says (SeaweedFS 4.48), so that port is not settable on its own."""
    result = run_refused_start(absent_stack_dir, STACK_WEED_ADMIN_PORT="55536")
    assert result.returncode == 2
    assert (
        "[stack]   STACK_WEED_ADMIN_PORT=55536 is above 55535: the admin's gRPC port is always"
        " STACK_WEED_ADMIN_PORT + 10000 (SeaweedFS's worker dials it there)"
    ) in result.stderr.splitlines()
    assert not absent_stack_dir.exists()


def test_a_port_on_the_admins_grpc_port_is_refused(absent_stack_dir: Path) -> None:
    result = run_refused_start(absent_stack_dir, STACK_SIM_PORT="33646")
    assert result.returncode == 2
    assert "STACK_SIM_PORT is 33646, the admin's gRPC port (STACK_WEED_ADMIN_PORT + 10000)" in result.stderr


def test_two_services_on_one_port_are_refused(absent_stack_dir: Path) -> None:
    result = run_refused_start(absent_stack_dir, STACK_S3_GRPC_PORT="55432")
    assert result.returncode == 2
    assert (
        "STACK_S3_GRPC_PORT and STACK_PG_PORT are both 55432: two services cannot share a port"
        in result.stderr
    )


def test_every_problem_is_named_at_once(absent_stack_dir: Path) -> None:
    result = run_refused_start(
        absent_stack_dir, STACK_PG_PORT="x", STACK_WEED_FILER_PORT="58888", STACK_PUSHGATEWAY_PORT="0"
    )
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("[stack]   ")]
    assert [problem.split()[1] for problem in problems] == [
        "STACK_PG_PORT=x",
        "STACK_PUSHGATEWAY_PORT=0",
        "STACK_WEED_FILER_GRPC_PORT",
    ]


# --------------------------------------------------------------------------------------------
# A separate stack on ports above 55535


def is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on, above 55535 and above the kernel's usual ephemeral range."""
    ports = [port for port in random.sample(range(61_000, 65_536), 400) if is_free(port)]
    assert len(ports) >= count, "no free ports above 61000"
    return ports[:count]


def free_admin_port() -> int:
    """A port that is free, and so is the port 10000 above it (the admin's gRPC port)."""
    for port in random.sample(range(20_000, 30_000), 400):
        if is_free(port) and is_free(port + 10_000):
            return port
    raise AssertionError("no free admin port")


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def separate_stack_dir() -> Iterator[Path]:
    """A STACK_DIR the `postgres` user can reach (pytest's tmp_path is private to root)."""
    if os.getuid() == 0:
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(REPO_ROOT)], check=False
        )
        if reachable.returncode != 0:
            pytest.skip("as root with a checkout `postgres` cannot reach, the cluster is the default stack's")
    directory = Path(tempfile.mkdtemp(prefix="stack-ports-", dir="/var/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.slow
def test_a_stack_on_ports_above_55535_binds_exactly_the_ports_it_was_given(separate_stack_dir: Path) -> None:
    settable = [name for name in DEFAULT_PORTS if name != "STACK_WEED_ADMIN_PORT"]
    ports = dict(zip(settable, free_ports(len(settable)), strict=True))
    ports["STACK_WEED_ADMIN_PORT"] = free_admin_port()
    bound = {**ports, "admin gRPC": ports["STACK_WEED_ADMIN_PORT"] + 10_000}
    variables: Mapping[str, str] = {name: str(port) for name, port in ports.items()}
    try:
        started = run_stack("start", separate_stack_dir, **variables)
        assert started.returncode == 0, started.stderr
        assert {name: port for name, port in bound.items() if not listening(port)} == {}
        # SeaweedFS reports a port it cannot use only in its log, and goes on with others.
        time.sleep(3)  # its maintenance worker's first connection to the admin
        log = (separate_stack_dir / "logs" / "seaweedfs.log").read_text()
        assert "invalid port" not in log
        assert "connection to admin server failed" not in log
        stack_env = (separate_stack_dir / "stack.env").read_text()
        assert f"S3_ENDPOINT_URL=http://127.0.0.1:{ports['STACK_S3_PORT']}" in stack_env
        assert f"@127.0.0.1:{ports['STACK_PG_PORT']}/dwh" in stack_env
    finally:
        stopped = run_stack("stop", separate_stack_dir, **variables)
    assert stopped.returncode == 0, stopped.stderr
    assert {name: port for name, port in bound.items() if listening(port)} == {}
