"""The S3 client the pipeline's resources build: botocore's standard retries, bounded.

moto plays S3; a ``before-send`` hook registered ahead of it answers the first requests with
S3 errors, so each request runs through botocore's real retry handler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from amplitude_pipeline.defs.resources import build_resources
from amplitude_pipeline.defs.settings import Settings
from amplitude_pipeline.retries import DEFAULT_RETRY

BUCKET = "retries-test"
KEY = "amplitude/events/2024-01-08.jsonl.gz"
SLOW_DOWN = (503, "SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR = (500, "InternalError", "We encountered an internal error. Please try again.")


class FailingFirst:
    """A ``before-send`` hook: the first ``failures`` requests get these S3 errors, the rest go on."""

    def __init__(self, *failures: tuple[int, str, str]) -> None:
        self.failures = list(failures)
        self.requests = 0

    def __call__(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        self.requests += 1
        if not self.failures:
            return None
        status, code, message = self.failures.pop(0)
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The client of the code location's S3 resource, against moto's S3 with one object."""
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = dataclasses.replace(Settings.from_env(), s3_endpoint_url=None, aws_region="us-east-1")
    with mock_aws():
        client = build_resources(settings)["raw_event_store"].create_resource(None).client
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=KEY, Body=b"events")
        yield client


def test_the_client_uses_standard_retries_for_the_pipelines_attempts(s3_client: Any) -> None:
    assert s3_client.meta.config.retries == {"mode": "standard", "total_max_attempts": DEFAULT_RETRY.attempts}


def test_a_slow_down_and_a_server_error_are_retried_then_the_request_succeeds(s3_client: Any) -> None:
    hook = FailingFirst(SLOW_DOWN, INTERNAL_ERROR)
    s3_client.meta.events.register_first("before-send.s3.GetObject", hook)

    body = s3_client.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()

    assert body == b"events"
    assert hook.requests == 3


def test_server_errors_beyond_the_attempts_fail_the_request(s3_client: Any) -> None:
    hook = FailingFirst(*[INTERNAL_ERROR] * DEFAULT_RETRY.attempts)
    s3_client.meta.events.register_first("before-send.s3.HeadObject", hook)

    with pytest.raises(ClientError) as raised:
        s3_client.head_object(Bucket=BUCKET, Key=KEY)

    assert raised.value.response["ResponseMetadata"]["MaxAttemptsReached"]
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == DEFAULT_RETRY.attempts - 1
    assert hook.requests == DEFAULT_RETRY.attempts
    assert hook.failures == []


def test_a_client_error_is_not_retried(s3_client: Any) -> None:
    hook = FailingFirst((403, "AccessDenied", "Access Denied"))
    s3_client.meta.events.register_first("before-send.s3.HeadObject", hook)

    with pytest.raises(ClientError, match="AccessDenied"):
        s3_client.head_object(Bucket=BUCKET, Key=KEY)

    assert hook.requests == 1
