"""CONTRACT §2: the Export API credentials never appear in logs."""

from __future__ import annotations

import base64
import io
import logging

import pytest

from amplitude_pipeline.retries import RetrySettings
from amplitude_pipeline_tests.amplitude.support import (
    API_KEY,
    DAY,
    SECRET_KEY,
    RecordingLog,
    make_client,
)
from amplitude_simulator import Fault, SimulatorServer

FAULTS = (
    Fault.rate_limited(retry_after=1),
    Fault.server_error(),
    Fault.connection_reset(),
    Fault.truncated_zip(),
    Fault.html_200(),
    Fault.gateway_timeout(),  # then a split into two half days
)
SECRETS = (API_KEY, SECRET_KEY, base64.b64encode(f"{API_KEY}:{SECRET_KEY}".encode()).decode())


def test_no_key_appears_in_any_log_line_of_a_faulty_run(
    server: SimulatorServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, requests' and urllib3's included
    # urllib3's own level too: another module may have raised it (importing dagster_k8s sets WARNING).
    caplog.set_level(logging.DEBUG, logger="urllib3")
    client_log = RecordingLog()
    server.add_faults(*FAULTS)

    retry = RetrySettings(attempts=len(FAULTS), base_seconds=0.01)

    make_client(server, sleeps, retry=retry, log=client_log).export_day(DAY, io.BytesIO())

    client_lines = [message for _, message in client_log.messages]
    # The run did log (retries, the split, urllib3's request lines), so the check below has teeth.
    assert sum(level == "warning" for level, _ in client_log.messages) == 5
    assert any("splitting" in line for line in client_lines)
    assert any("/api/2/export" in record.getMessage() for record in caplog.records)
    for line in [*client_lines, *(record.getMessage() for record in caplog.records), caplog.text]:
        for secret in SECRETS:
            assert secret not in line


def test_the_default_logger_carries_no_key_either(
    server: SimulatorServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_faults(Fault.server_error(), Fault.connection_reset())

    make_client(server, sleeps).export_day(DAY, io.BytesIO())

    client_records = [r for r in caplog.records if r.name == "amplitude_pipeline.amplitude.client"]
    assert len(client_records) == 2
    for secret in SECRETS:
        assert secret not in caplog.text
