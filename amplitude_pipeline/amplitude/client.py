"""Amplitude Export API client: one request per UTC day, streamed to disk, merged in order.

Status codes (https://amplitude.com/docs/apis/analytics/export):
- 404: no data in the window, an empty day rather than an error;
- 400 (the response would exceed 4 GB) and 504 (too much data): the window is split in
  halves, down to one hour; an hour that is still too large cannot come through this API;
- 401/403: the credentials are wrong, retrying cannot help;
- 429, other 5xx, timeouts, broken connections and a 200 whose body is not a zip archive:
  transient, retried by the pipeline's one retry mechanism (``amplitude_pipeline.retries``:
  full-jitter exponential backoff, ``Retry-After`` in seconds or as an HTTP date honoured up to
  ``max_server_wait_seconds``, every wait logged). When the attempts run out the window fails
  with ``AmplitudeUnavailableError``, the only export error that a later run may not repeat
  (``AmplitudeExportError.transient``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from amplitude_pipeline.amplitude.archive import ArchiveError, append_archive_events
from amplitude_pipeline.log import Log
from amplitude_pipeline.retries import DEFAULT_RETRY, RetrySettings, retrying
from amplitude_pipeline.text import shorten

if TYPE_CHECKING:
    import requests

DEFAULT_EXPORT_URL = "https://amplitude.com/api/2/export"
_DOWNLOAD_CHUNK = 1 << 20
_TOO_MUCH_DATA = frozenset({400, 504})
_BAD_CREDENTIALS = frozenset({401, 403})
_NETWORK_ERROR_LIMIT = 300  # requests' messages nest the whole urllib3 chain; its start says enough


class AmplitudeExportError(Exception):
    """The export cannot succeed; the message says why and what to do."""

    transient: ClassVar[bool] = False
    """Whether a later run may succeed where this one failed (only when the API was unavailable)."""


class AmplitudeCredentialsError(AmplitudeExportError):
    pass


class AmplitudeTooMuchDataError(AmplitudeExportError):
    pass


class AmplitudeUnavailableError(AmplitudeExportError):
    """Transient faults outlasted every attempt; the API may answer later."""

    transient = True


class AmplitudeTransientError(Exception):
    """One attempt failed in a way the next may not: 429, 5xx, a timeout or reset, a broken body."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ExportWindow:
    """Whole hours [start, end], both inclusive, as the API's ``start``/``end`` parameters."""

    start: datetime
    end: datetime

    @classmethod
    def for_day(cls, day: date) -> ExportWindow:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return cls(start, start + timedelta(hours=23))

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / timedelta(hours=1)) + 1

    def halves(self) -> tuple[ExportWindow, ExportWindow]:
        first_hours = self.hours // 2
        middle = self.start + timedelta(hours=first_hours)
        return ExportWindow(self.start, middle - timedelta(hours=1)), ExportWindow(middle, self.end)

    def params(self) -> dict[str, str]:
        return {"start": self.start.strftime("%Y%m%dT%H"), "end": self.end.strftime("%Y%m%dT%H")}

    def __str__(self) -> str:
        if self.hours == 1:
            return self.start.strftime("%Y-%m-%d %H:00 UTC")
        return f"{self.start:%Y-%m-%d %H}:00–{self.end:%H}:59 UTC"


@dataclass
class DayExport:
    day: date
    events: int = 0
    files: int = 0
    requests: int = 0
    windows: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.events == 0


CONNECT_TIMEOUT_SECONDS = 30.0
# The longest silence while reading a response before the request is retried: the API prepares a
# day's archive before it sends the first byte, which takes minutes for a large project.
READ_TIMEOUT_SECONDS = 600.0


class AmplitudeExportClient:
    """Talks to the Export API. Knows nothing of Dagster; logs through any ``Log``."""

    def __init__(
        self,
        export_url: str,
        api_key: str,
        secret_key: str,
        *,
        retry: RetrySettings = DEFAULT_RETRY,
        connect_timeout_seconds: float = CONNECT_TIMEOUT_SECONDS,
        read_timeout_seconds: float = READ_TIMEOUT_SECONDS,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        log: Log | None = None,
        tmp_dir: str | Path | None = None,
    ) -> None:
        self._export_url = export_url
        self._auth = (api_key, secret_key)
        self._retry = retry
        self._timeout = (connect_timeout_seconds, read_timeout_seconds)
        # requests is imported here, not with the module: a run that loads tables never calls the API.
        import requests

        self._session = session or requests.Session()
        self._network_errors = (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        )
        self._sleep = sleep
        self._log: Log = log or logging.getLogger(__name__)
        self._tmp_dir = tmp_dir

    def export_day(self, day: date, out: BinaryIO) -> DayExport:
        """Append the day's events to ``out`` (gzip members, hour then part order)."""
        result = DayExport(day)
        self._export_window(ExportWindow.for_day(day), out, result)
        return result

    def _export_window(self, window: ExportWindow, out: BinaryIO, result: DayExport) -> None:
        with tempfile.TemporaryDirectory(prefix="amplitude-export-", dir=self._tmp_dir) as tmp:
            archive_path = Path(tmp) / "export.zip"
            status = self._download_with_retries(window, archive_path, out, result)
        if status in _TOO_MUCH_DATA:
            if window.hours == 1:
                raise AmplitudeTooMuchDataError(
                    f"Amplitude cannot export the hour {window}: the data is too large for the "
                    f"Export API (HTTP {status}, its limit is 4 GB per response). Export that "
                    "period through Amplitude's Amazon S3 export instead "
                    "(https://amplitude.com/docs/data/destination-catalog/amazon-s3)."
                )
            first, second = window.halves()
            self._log.info(f"Amplitude export of {window}: too much data (HTTP {status}); splitting")
            self._export_window(first, out, result)
            self._export_window(second, out, result)

    def _download_with_retries(
        self, window: ExportWindow, archive_path: Path, out: BinaryIO, result: DayExport
    ) -> int:
        """Download and append one window; the status when it is 404/too-much-data, else 200."""
        attempts = retrying(
            f"Amplitude export of {window}",
            lambda error: isinstance(error, AmplitudeTransientError),
            settings=self._retry,
            log=self._log,
            server_wait=lambda error: getattr(error, "retry_after", None),
            sleep=self._sleep,
        )
        try:
            return attempts(self._download_once, window, archive_path, out, result)
        except AmplitudeTransientError as error:
            raise AmplitudeUnavailableError(
                f"Amplitude export of {window} failed after {self._retry.attempts} attempts; "
                f"last error: {error}"
            ) from error

    def _download_once(
        self, window: ExportWindow, archive_path: Path, out: BinaryIO, result: DayExport
    ) -> int:
        """One attempt: every request counts in ``result.requests``, retried or not."""
        result.requests += 1
        try:
            status = self._download(window, archive_path)
        except self._network_errors as error:
            raise AmplitudeTransientError(
                f"{type(error).__name__}: {shorten(str(error), _NETWORK_ERROR_LIMIT)}"
            ) from error
        if status == 200:
            try:
                stats = append_archive_events(archive_path, out)
            except ArchiveError as error:
                raise AmplitudeTransientError(f"200 response with an unusable body: {error}") from error
            result.events += stats.events
            result.files += stats.files
            result.windows.append(str(window))
        return status

    def _download(self, window: ExportWindow, archive_path: Path) -> int:
        with self._session.get(
            self._export_url, params=window.params(), auth=self._auth, stream=True, timeout=self._timeout
        ) as response:
            status = response.status_code
            if status == 200:
                with archive_path.open("wb") as archive:
                    for chunk in response.iter_content(_DOWNLOAD_CHUNK):
                        archive.write(chunk)
                return status
            if status == 404 or status in _TOO_MUCH_DATA:
                return status
            if status in _BAD_CREDENTIALS:
                raise AmplitudeCredentialsError(
                    f"Amplitude rejected the Export API credentials (HTTP {status}) at {self._export_url}: "
                    "check AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY, and that the URL matches the "
                    "project's data residency (AMPLITUDE_EXPORT_URL)."
                )
            if status == 429 or status >= 500:
                raise AmplitudeTransientError(f"HTTP {status}", _retry_after_seconds(response))
            raise AmplitudeExportError(
                f"Amplitude export of {window} answered HTTP {status}: {response.text[:300]!r}"
            )


def _retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # asctime dates and "-0000" carry no zone; HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
