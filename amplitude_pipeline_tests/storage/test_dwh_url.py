"""DWH_URL never leaks (issue 9, item 7): a malformed URL is refused before it reaches the driver,
and what the refusal says holds no part of the credentials. No services needed."""

import traceback

import pytest

from amplitude_pipeline.storage.dwh import DWHConfigurationError, DWHRepository, checked_dwh_url
from amplitude_pipeline.storage.field_mappings import load_field_mappings_once
from amplitude_pipeline_tests.support import DEFAULT_MAPPINGS

PASSWORD_WITH_AT = "s3cr3t@tail-of-the-password"


def repository(url: str) -> DWHRepository:
    return DWHRepository(
        url=url, db_schema="public", mappings=load_field_mappings_once(str(DEFAULT_MAPPINGS))
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://pipeline:{PASSWORD_WITH_AT}@127.0.0.1:55432/dwh",
        f"postgresql+psycopg://pipeline:{PASSWORD_WITH_AT}@db.internal/dwh?sslmode=require",
    ],
)
def test_an_unescaped_at_in_the_password_is_refused_without_any_part_of_it(url: str) -> None:
    with pytest.raises(DWHConfigurationError) as raised:
        repository(url).ensure_schema()
    told = "".join(traceback.format_exception(raised.value))
    assert "percent-encode '@'" in str(raised.value)
    for piece in ("s3cr3t", "tail-of-the-password", "db.internal"):
        assert piece not in told


def test_a_percent_encoded_at_is_the_way_to_write_it() -> None:
    url = checked_dwh_url("postgresql+psycopg://pipeline:s3cr3t%40tail@127.0.0.1:55432/dwh")
    assert (url.password, url.host) == ("s3cr3t@tail", "127.0.0.1")


def test_the_wrong_driver_is_refused_before_connecting() -> None:
    with pytest.raises(DWHConfigurationError, match="psycopg 3 driver"):
        checked_dwh_url("postgresql+psycopg2://pipeline:pw@127.0.0.1/dwh")


def test_text_that_is_not_a_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(DWHConfigurationError) as raised:
        checked_dwh_url("pipeline:hunter2 at the db")
    assert "hunter2" not in str(raised.value)


def test_redact_takes_out_the_password_whole_and_in_pieces() -> None:
    dwh = repository(f"postgresql+psycopg://pipeline:{PASSWORD_WITH_AT}@127.0.0.1:55432/dwh")
    message = "failed to resolve host 'tail-of-the-password@127.0.0.1'; password s3cr3t@tail-of-the-password"
    redacted = dwh.redact(message)
    assert "s3cr3t" not in redacted and "tail-of-the-password" not in redacted
    assert "127.0.0.1" in redacted
