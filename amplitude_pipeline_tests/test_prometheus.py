"""``amplitude_pipeline_tests.prometheus``: a Prometheus server on the stack's Pushgateway fires
an alert on a pushed gauge and resolves it, and fails loudly when it cannot run.

Each test pushes to its own job, which it deletes afterwards: the stack's Pushgateway is shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, delete_from_gateway, push_to_gateway

from amplitude_pipeline_tests.prometheus import StartPrometheus, prometheus_server
from amplitude_pipeline_tests.support import closed_port


@pytest.fixture
def job(pushgateway_url: str) -> Iterator[str]:
    """A Pushgateway job of this test's own, deleted when it ends."""
    name = f"test_prometheus_{uuid.uuid4().hex[:12]}"
    yield name
    delete_from_gateway(pushgateway_url, job=name, timeout=5)


def push_gauge(pushgateway_url: str, job: str, value: float) -> None:
    registry = CollectorRegistry()
    Gauge("test_alert_gauge", "A gauge the alert test sets.", registry=registry).set(value)
    push_to_gateway(pushgateway_url, job=job, registry=registry, timeout=5)


def gauge_rule(path: Path, job: str) -> Path:
    path.write_text(
        f"""groups:
  - name: test
    rules:
      - alert: TestGaugeAboveZero
        expr: test_alert_gauge{{job="{job}"}} > 0
        labels:
          severity: test
        annotations:
          summary: the gauge is {{{{ $value }}}}
"""
    )
    return path


@pytest.mark.integration
def test_an_alert_fires_after_a_push_and_resolves_after_a_push_of_zero(
    start_prometheus: StartPrometheus, pushgateway_url: str, job: str, tmp_path: Path
) -> None:
    prometheus = start_prometheus([gauge_rule(tmp_path / "rules.yml", job)])
    assert prometheus.alerts() == []

    push_gauge(pushgateway_url, job, 3)
    [alert] = prometheus.wait_until_firing("TestGaugeAboveZero")
    assert (alert.value, alert.annotations) == (3, {"summary": "the gauge is 3"})
    # honor_labels: the pushed job is the series' job, not the scrape job's name.
    assert {key: alert.labels[key] for key in ("alertname", "job", "severity")} == {
        "alertname": "TestGaugeAboveZero",
        "job": job,
        "severity": "test",
    }
    [sample] = prometheus.query(f'test_alert_gauge{{job="{job}"}}')
    assert sample.value == 3

    push_gauge(pushgateway_url, job, 0)
    prometheus.wait_until_absent("TestGaugeAboveZero")
    assert [sample.value for sample in prometheus.query(f'test_alert_gauge{{job="{job}"}}')] == [0]


@pytest.mark.integration
def test_waiting_for_an_alert_that_does_not_fire_names_its_rule(
    start_prometheus: StartPrometheus, job: str, tmp_path: Path
) -> None:
    prometheus = start_prometheus([gauge_rule(tmp_path / "rules.yml", job)])
    with pytest.raises(AssertionError) as not_firing:
        prometheus.wait_until_firing("TestGaugeAboveZero", timeout=1)
    assert str(not_firing.value) == (
        "alert TestGaugeAboveZero is not firing after 1 s; its active alerts: none; rule TestGaugeAboveZero:"
        f" 'test_alert_gauge{{job=\"{job}\"}} > 0', health ok"
    )
    with pytest.raises(AssertionError, match=r"no alerting rule NoSuchAlert is loaded \(loaded: \['TestGau"):
        prometheus.wait_until_firing("NoSuchAlert", timeout=0)


def test_a_rule_file_that_does_not_parse_fails_the_start_with_the_servers_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: up ==\n")
    with (
        pytest.raises(
            RuntimeError,
            match=r"(?s)prometheus exited \(1\) before it was ready.*broken\.yml: 5:15: .*could not parse expression",
        ),
        prometheus_server(tmp_path / "prometheus", f"http://127.0.0.1:{closed_port()}", [broken]),
    ):
        pass


def test_a_missing_rule_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """Prometheus reads rule_files as globs: a missing file would load no rule, silently."""
    missing = tmp_path / "missing.yml"
    with (
        pytest.raises(FileNotFoundError, match=r"missing\.yml"),
        prometheus_server(tmp_path / "prometheus", f"http://127.0.0.1:{closed_port()}", [missing]),
    ):
        pass
    assert not (tmp_path / "prometheus" / "tsdb").exists()


@pytest.mark.slow
def test_a_pushgateway_it_cannot_scrape_fails_the_start(tmp_path: Path) -> None:
    port = closed_port()
    with (
        pytest.raises(
            RuntimeError, match=rf"cannot scrape the Pushgateway at 127\.0\.0\.1:{port}: \[.*refused"
        ),
        prometheus_server(tmp_path / "prometheus", f"http://127.0.0.1:{port}", startup_timeout=10),
    ):
        pass
