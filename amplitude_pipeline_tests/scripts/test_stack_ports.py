"""``scripts/stack.sh``'s ports: every one set by a ``STACK_*`` variable, each checked before
anything starts, none of them served by another process once ``start`` says ready.

These tests never touch the running default stack: the refusals are checked with a
``STACK_DIR`` that does not exist (the script must exit before creating it) and with
``PG_BIN``/``VENV_BIN`` pointing nowhere, so even a broken check could start nothing. The tests
that start services start a separate stack in its own ``STACK_DIR`` on their own ports and stop
only that.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
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


def separate_stack_ports() -> dict[str, int]:
    """Free ports for every setting, the admin's with its gRPC port (+ 10000) free too."""
    settable = [name for name in DEFAULT_PORTS if name != "STACK_WEED_ADMIN_PORT"]
    ports = dict(zip(settable, free_ports(len(settable)), strict=True))
    ports["STACK_WEED_ADMIN_PORT"] = free_admin_port()
    return ports


def bound_ports(ports: Mapping[str, int]) -> dict[str, int]:
    """Every port a stack with these settings binds."""
    return {**ports, "admin gRPC": ports["STACK_WEED_ADMIN_PORT"] + 10_000}


def as_variables(ports: Mapping[str, int]) -> dict[str, str]:
    return {name: str(port) for name, port in ports.items()}


def stack_processes(stack_dir: Path) -> list[str]:
    """The pid files and PostgreSQL marker a started stack leaves in its STACK_DIR."""
    return sorted(path.name for path in [*stack_dir.glob("*.pid"), *stack_dir.glob("postgres.started")])


HOLD_PORT = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
holder = socket.socket(family)
holder.bind((sys.argv[1], int(sys.argv[2])))
if sys.argv[3] == "listen":
    holder.listen()
print("holding", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def port_held(port: int, *, address: str = "127.0.0.1", listen: bool = True) -> Iterator[int]:
    """Another process holds ``port`` on ``address`` (listening, or only bound) until the block
    ends; yields its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_PORT, address, str(port), "listen" if listen else "bind"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "holding\n", f"could not hold port {port}"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def stopped_afterwards(separate_stack_dir: Path) -> Iterator[dict[str, int]]:
    """Ports for a separate stack in ``separate_stack_dir``, which is stopped when the test ends
    whatever it started."""
    ports = separate_stack_ports()
    yield ports
    run_stack("stop", separate_stack_dir, **as_variables(ports))


def test_ports_other_processes_listen_on_are_refused_and_nothing_starts(
    separate_stack_dir: Path, stopped_afterwards: dict[str, int]
) -> None:
    """The bug: with the Pushgateway's port held, ``start`` said ready and the runs' metrics went
    to the other process. The binaries are real, so a broken check would start the stack."""
    ports = stopped_afterwards
    pg, pushgateway = ports["STACK_PG_PORT"], ports["STACK_PUSHGATEWAY_PORT"]
    with (
        port_held(pg, address="0.0.0.0") as pg_holder,
        port_held(pushgateway) as pushgateway_holder,
    ):
        result = run_stack("start", separate_stack_dir, **as_variables(ports))
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("[stack]   ")]
    assert [problem.split(" (", 2)[:2] for problem in problems] == [
        [f"[stack]   port {pg}", f"STACK_PG_PORT) is held by pid {pg_holder}"],
        [f"[stack]   port {pushgateway}", f"STACK_PUSHGATEWAY_PORT) is held by pid {pushgateway_holder}"],
        ["[stack]   stop them, or move this stack with the STACK_* variables", "scripts/stack.sh ports)"],
    ]
    assert "[stack] ready;" not in result.stderr
    assert list(separate_stack_dir.iterdir()) == []
    assert {name: port for name, port in bound_ports(ports).items() if listening(port)} == {}


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_listener_on_any_address_is_refused(absent_stack_dir: Path) -> None:
    [port] = free_ports(1)
    with port_held(port, address="::") as holder:
        result = run_refused_start(absent_stack_dir, STACK_SIM_PORT=str(port))
    assert result.returncode == 1
    assert f"[stack]   port {port} (STACK_SIM_PORT) is held by pid {holder} (" in result.stderr
    assert not absent_stack_dir.exists()


@pytest.mark.integration
@pytest.mark.slow
def test_a_port_taken_after_the_check_fails_the_start_and_stops_what_it_started(
    separate_stack_dir: Path, stopped_afterwards: dict[str, int]
) -> None:
    """A socket bound but not listening passes the check (nothing listens), and the Pushgateway,
    started last, cannot bind: as if the port were taken between the check and the start."""
    ports = stopped_afterwards
    pushgateway = ports["STACK_PUSHGATEWAY_PORT"]
    with port_held(pushgateway, listen=False):
        result = run_stack("start", separate_stack_dir, **as_variables(ports))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    exited = [line for line in lines if "exited before it listened" in line]
    assert len(exited) == 1
    assert f"exited before it listened on port {pushgateway} (STACK_PUSHGATEWAY_PORT)" in exited[0]
    assert exited[0].startswith("[stack] pushgateway (pid ")
    assert "bind: address already in use" in result.stderr
    assert lines[-1] == "[stack] start failed: stopped what it had started"
    assert "[stack] ready;" not in result.stderr
    assert stack_processes(separate_stack_dir) == []
    assert {name: port for name, port in bound_ports(ports).items() if listening(port)} == {}


@pytest.mark.integration
@pytest.mark.slow
def test_a_stack_on_ports_above_55535_binds_exactly_the_ports_it_was_given(separate_stack_dir: Path) -> None:
    ports = separate_stack_ports()
    bound = bound_ports(ports)
    variables = as_variables(ports)
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

        # Its own ports are no obstacle to starting it again: nothing new starts.
        again = run_stack("start", separate_stack_dir, **variables)
        assert again.returncode == 0, again.stderr
        assert [line.split(" (pid")[0] for line in again.stderr.splitlines()] == [
            "[stack] postgres already running",
            "[stack] seaweedfs already running",
            "[stack] simulator already running",
            "[stack] pushgateway already running",
            f"[stack] ready; environment: source {separate_stack_dir}/stack.env",
        ]

        # A running service must serve this run's port, not the one it was started with.
        [moved] = free_ports(1)
        elsewhere = run_stack("start", separate_stack_dir, **{**variables, "STACK_SIM_PORT": str(moved)})
        assert elsewhere.returncode == 1
        assert f"did not listen on port {moved} (STACK_SIM_PORT)" in elsewhere.stderr
        assert "[stack] ready;" not in elsewhere.stderr
        assert listening(ports["STACK_SIM_PORT"])  # what was running before is left running
    finally:
        stopped = run_stack("stop", separate_stack_dir, **variables)
    assert stopped.returncode == 0, stopped.stderr
    assert {name: port for name, port in bound.items() if listening(port)} == {}
