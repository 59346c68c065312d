"""An HTTP server that behaves like Amplitude's Export API (``GET /api/2/export``).

Behaviour of an export request, in order:

1. **Faults.** If a fault is queued, the request takes one (FIFO; a fault with ``count=n``
   serves the next *n* export requests). Faults model the infrastructure in front of the API, so
   they apply before authentication: ``rate_limited`` (429 + ``Retry-After``), ``server_error``
   (5xx), ``gateway_timeout`` (504), ``too_large`` (400), ``html_200`` (a 200 HTML page),
   ``connection_reset`` (the socket is closed with a TCP RST, no response). ``slow`` sleeps and
   then answers normally; ``truncated_zip`` answers normally but cuts a 200 zip body in half
   (``Content-Length`` matches the truncated body, so only the zip is broken).
2. **Auth.** HTTP Basic with the configured API key and secret key; 401 otherwise. Error bodies
   never echo credentials.
3. **Parameters.** ``start`` and ``end`` as ``YYYYMMDDTHH`` (UTC, both inclusive); 400 with a
   message when missing, malformed, or ``end < start``.
4. **Size rules.** 400 "Raw data response exceeds 4GB" when the window spans more than
   ``config.too_much_data_hours_over`` hours or contains one of ``config.too_much_data_hours``.
5. **Data.** 404 when the window holds no events (e.g. an empty day); otherwise 200 with an
   ``application/zip`` body and a ``Content-Length`` (see :mod:`amplitude_simulator.archive`).

Control endpoints (no auth; this is a local test tool): ``POST /__faults`` (a JSON list of
faults, or one fault object), ``GET /__faults``, ``DELETE /__faults``, ``GET /__requests``,
``DELETE /__requests``, ``GET /__health``. Only non-control requests are recorded.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import parse_qs, urlsplit

import orjson

from amplitude_simulator.archive import archive_plan, parse_export_time, window_hours, write_archive
from amplitude_simulator.data import SimulatorConfig

__all__ = ["EXPORT_PATH", "TOO_LARGE_MESSAGE", "Fault", "FaultKind", "RequestRecord", "SimulatorServer"]

EXPORT_PATH = "/api/2/export"
TOO_LARGE_MESSAGE = "Raw data response exceeds 4GB. Please narrow the time range of your request."
_ARCHIVE_SPOOL_BYTES = 64 * 1024 * 1024  # larger archives are spooled to a temporary file
_MAX_CONTROL_BODY = 1024 * 1024


class FaultKind(StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    GATEWAY_TIMEOUT = "gateway_timeout"
    TOO_LARGE = "too_large"
    SLOW = "slow"
    TRUNCATED_ZIP = "truncated_zip"
    HTML_200 = "html_200"
    CONNECTION_RESET = "connection_reset"


@dataclass(frozen=True)
class Fault:
    """A failure the next ``count`` export requests will see. Build with the class methods."""

    kind: FaultKind
    count: int = 1
    #: HTTP status of a ``server_error``.
    status: int = 500
    #: ``Retry-After`` seconds of a ``rate_limited``.
    retry_after: int = 1
    #: Delay of a ``slow`` fault.
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.count < 1:
            raise ValueError("a fault's count must be at least 1")
        if not 500 <= self.status <= 599:
            raise ValueError("a server_error status must be within 500..599")
        if self.retry_after < 0 or self.seconds < 0:
            raise ValueError("retry_after and seconds must not be negative")

    @classmethod
    def rate_limited(cls, retry_after: int = 1, *, count: int = 1) -> Fault:
        return cls(FaultKind.RATE_LIMITED, count=count, retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500, *, count: int = 1) -> Fault:
        return cls(FaultKind.SERVER_ERROR, count=count, status=status)

    @classmethod
    def gateway_timeout(cls, *, count: int = 1) -> Fault:
        return cls(FaultKind.GATEWAY_TIMEOUT, count=count)

    @classmethod
    def too_large(cls, *, count: int = 1) -> Fault:
        return cls(FaultKind.TOO_LARGE, count=count)

    @classmethod
    def slow(cls, seconds: float, *, count: int = 1) -> Fault:
        return cls(FaultKind.SLOW, count=count, seconds=seconds)

    @classmethod
    def truncated_zip(cls, *, count: int = 1) -> Fault:
        return cls(FaultKind.TRUNCATED_ZIP, count=count)

    @classmethod
    def html_200(cls, *, count: int = 1) -> Fault:
        return cls(FaultKind.HTML_200, count=count)

    @classmethod
    def connection_reset(cls, *, count: int = 1) -> Fault:
        return cls(FaultKind.CONNECTION_RESET, count=count)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, as accepted by ``POST /__faults`` (only the fields the kind uses)."""
        data: dict[str, Any] = {"kind": self.kind.value, "count": self.count}
        if self.kind is FaultKind.SERVER_ERROR:
            data["status"] = self.status
        elif self.kind is FaultKind.RATE_LIMITED:
            data["retry_after"] = self.retry_after
        elif self.kind is FaultKind.SLOW:
            data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Parse the JSON form; ValueError naming the problem if it is not a valid fault."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault must be a JSON object")
        unknown = set(data) - {"kind", "count", "status", "retry_after", "seconds"}
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        try:
            kind = FaultKind(data["kind"])
        except KeyError:
            raise ValueError("a fault needs a 'kind'") from None
        except ValueError:
            known = ", ".join(kind.value for kind in FaultKind)
            raise ValueError(f"unknown fault kind {data['kind']!r} (known: {known})") from None
        values: dict[str, Any] = {}
        for name, expected in (
            ("count", int),
            ("status", int),
            ("retry_after", int),
            ("seconds", (int, float)),
        ):
            if name in data:
                value = data[name]
                if isinstance(value, bool) or not isinstance(value, expected):
                    raise ValueError(f"fault field {name!r} must be a number")
                values[name] = value
        return cls(kind, **values)


@dataclass(frozen=True)
class RequestRecord:
    """One served (non-control) request."""

    method: str
    path: str
    start: str | None
    end: str | None
    #: ``None`` when the connection was reset without a response.
    status: int | None
    #: The fault kind that shaped the response, if any.
    fault: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "start": self.start,
            "end": self.end,
            "status": self.status,
            "fault": self.fault,
        }


@dataclass
class _Reply:
    status: int
    body: bytes | IO[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    #: Bytes of ``body`` to send; ``None`` = all of it.
    length: int | None = None


def _text(status: int, message: str, **headers: str) -> _Reply:
    return _Reply(status, (message + "\n").encode(), headers=headers)


def _json(status: int, payload: Any) -> _Reply:
    return _Reply(status, orjson.dumps(payload), content_type="application/json")


def _html(status: int, title: str) -> _Reply:
    body = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n"
    return _Reply(status, body.encode(), content_type="text/html; charset=utf-8")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: SimulatorServer) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)


class SimulatorServer:
    """The Export API simulator, serving from a background thread.

    The socket is bound on construction (so ``base_url`` is known even with ``port=0``);
    ``start()`` begins serving. Use it as a context manager to start and stop it.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = "sim-api-key",
        secret_key: str = "sim-secret-key",
        *,
        log_requests: bool = False,
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.log_requests = log_requests
        token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode("ascii")
        self._expected_authorization = f"Basic {token}".encode()
        self._lock = threading.Lock()
        self._faults: deque[tuple[Fault, int]] = deque()
        self._requests: list[RequestRecord] = []
        self._httpd = _HTTPServer((host, port), self)
        self._host = host
        self._thread: threading.Thread | None = None

    # --- lifecycle

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def export_url(self) -> str:
        return f"{self.base_url}{EXPORT_PATH}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="amplitude-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the socket (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- faults and request log

    def add_faults(self, *faults: Fault) -> None:
        """Queue faults; each export request consumes one use of the oldest queued fault."""
        with self._lock:
            self._faults.extend((fault, fault.count) for fault in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        """Queued faults, with ``count`` set to the uses left."""
        with self._lock:
            return [Fault(f.kind, left, f.status, f.retry_after, f.seconds) for f, left in self._faults]

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the served non-control requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault, left = self._faults[0]
            if left > 1:
                self._faults[0] = (fault, left - 1)
            else:
                self._faults.popleft()
            return fault

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _authorized(self, header: str | None) -> bool:
        if header is None:
            return False
        return hmac.compare_digest(header.strip().encode(), self._expected_authorization)

    # --- the export endpoint

    def _export_reply(self, start_raw: str | None, end_raw: str | None, *, truncate: bool) -> _Reply:
        """The response to an authorized export request, after faults."""
        if not start_raw or not end_raw:
            missing = [name for name, value in (("start", start_raw), ("end", end_raw)) if not value]
            return _text(400, f"Missing required parameter(s): {', '.join(missing)}")
        bounds: list[datetime] = []
        for name, raw in (("start", start_raw), ("end", end_raw)):
            try:
                bounds.append(parse_export_time(raw))
            except ValueError as error:
                return _text(400, f"Invalid '{name}' parameter {raw[:40]!r}: {error}")
        start, end = bounds
        if end < start:
            return _text(400, "Invalid time range: 'end' is before 'start'")
        if self._too_much_data(start, end):
            return _text(400, TOO_LARGE_MESSAGE)
        plan = archive_plan(self.config, start, end)
        if not plan:
            return _text(404, "No data available for the requested time range")
        # Ownership passes to the reply: _Handler._send closes it after sending.
        spool = cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=_ARCHIVE_SPOOL_BYTES))  # noqa: SIM115
        try:
            write_archive(self.config, plan, spool)
            size = spool.tell()
        except BaseException:
            spool.close()
            raise
        return _Reply(
            200,
            spool,
            content_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{start_raw}-{end_raw}.zip"'},
            length=size // 2 if truncate else size,
        )

    def _too_much_data(self, start: datetime, end: datetime) -> bool:
        limit = self.config.too_much_data_hours_over
        if limit is not None and window_hours(start, end) > limit:
            return True
        return any(
            start <= datetime(day.year, day.month, day.day, hour) <= end
            for day, hour in self.config.too_much_data_hours
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmplitudeSimulator/1.0"

    def version_string(self) -> str:
        return self.server_version

    @property
    def simulator(self) -> SimulatorServer:
        return cast(_HTTPServer, self.server).simulator

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries no credentials (they travel in the Authorization header).
        if self.simulator.log_requests:
            super().log_message(format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        super().log_message(format, *args)  # errors are logged even when requests are not

    # --- routing

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        control: dict[tuple[str, str], Callable[[], _Reply]] = {
            ("POST", "/__faults"): self._post_faults,
            ("GET", "/__faults"): self._get_faults,
            ("DELETE", "/__faults"): self._delete_faults,
            ("GET", "/__requests"): self._get_requests,
            ("DELETE", "/__requests"): self._delete_requests,
            ("GET", "/__health"): self._health,
        }
        reads_body = (method, url.path) == ("POST", "/__faults")
        if not reads_body and (
            self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        ):
            # An unread request body would corrupt the next request on a kept-alive connection.
            self.close_connection = True
        if url.path == EXPORT_PATH and method == "GET":
            self._export(url.query)
        elif (method, url.path) in control:
            self._send(control[method, url.path]())
        elif any(path == url.path for _, path in control):
            self._send(_text(405, f"Method {method} not allowed"))
        else:
            # Recorded before answering, so a client that got the answer also sees the record.
            status = 405 if url.path == EXPORT_PATH else 404
            self.simulator._record(RequestRecord(method, url.path, None, None, status))
            self._send(_text(status, "Method not allowed" if status == 405 else "Not found"))

    # --- export

    def _export(self, query: str) -> None:
        simulator = self.simulator
        params = parse_qs(query, keep_blank_values=True)
        start_raw = params.get("start", [None])[0]
        end_raw = params.get("end", [None])[0]
        fault = simulator._take_fault()
        kind = fault.kind if fault is not None else None

        def record(status: int | None) -> None:
            simulator._record(
                RequestRecord("GET", EXPORT_PATH, start_raw, end_raw, status, kind.value if kind else None)
            )

        if fault is not None and kind is FaultKind.CONNECTION_RESET:
            record(None)
            self._reset_connection()
            return
        reply = self._fault_reply(fault) if fault is not None else None
        if reply is None:
            if not simulator._authorized(self.headers.get("Authorization")):
                reply = _text(
                    401, "Invalid API key or secret key", **{"WWW-Authenticate": 'Basic realm="Amplitude"'}
                )
            else:
                try:
                    reply = simulator._export_reply(
                        start_raw, end_raw, truncate=kind is FaultKind.TRUNCATED_ZIP
                    )
                except Exception as error:  # a simulator bug: answer 500 rather than hang up
                    self.log_error("export failed: %r", error)
                    reply = _text(500, "Internal simulator error")
        record(reply.status)
        self._send(reply)

    def _fault_reply(self, fault: Fault) -> _Reply | None:
        """The reply a fault imposes, or ``None`` to continue with the normal response."""
        kind = fault.kind
        if kind is FaultKind.RATE_LIMITED:
            return _text(
                429, "Too many requests: rate limit exceeded", **{"Retry-After": str(fault.retry_after)}
            )
        if kind is FaultKind.SERVER_ERROR:
            return _text(fault.status, "Internal server error")
        if kind is FaultKind.GATEWAY_TIMEOUT:
            return _html(504, "504 Gateway Time-out")
        if kind is FaultKind.TOO_LARGE:
            return _text(400, TOO_LARGE_MESSAGE)
        if kind is FaultKind.HTML_200:
            return _html(200, "Amplitude is temporarily unavailable")
        if kind is FaultKind.SLOW:
            time.sleep(fault.seconds)
        return None  # SLOW after its delay, TRUNCATED_ZIP (applied to the archive)

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP RST and no response bytes."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    # --- control endpoints

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_CONTROL_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _post_faults(self) -> _Reply:
        try:
            payload = orjson.loads(self._read_body() or b"null")
            items = payload if isinstance(payload, list) else [payload]
            faults = [Fault.from_dict(item) for item in items]
        except (ValueError, TypeError) as error:  # orjson.JSONDecodeError is a ValueError
            self.close_connection = True  # the body may be unread
            return _text(400, f"Invalid faults: {error}")
        self.simulator.add_faults(*faults)
        return self._get_faults()

    def _get_faults(self) -> _Reply:
        return _json(200, {"pending": [fault.to_dict() for fault in self.simulator.pending_faults]})

    def _delete_faults(self) -> _Reply:
        self.simulator.clear_faults()
        return self._get_faults()

    def _get_requests(self) -> _Reply:
        return _json(200, [record.to_dict() for record in self.simulator.requests])

    def _delete_requests(self) -> _Reply:
        self.simulator.clear_requests()
        return _json(200, [])

    def _health(self) -> _Reply:
        config = self.simulator.config
        return _json(
            200,
            {
                "status": "ok",
                "project_id": config.project_id,
                "seed": config.seed,
                "users": config.users,
                "events_per_day": config.events_per_day,
            },
        )

    # --- output

    def _send(self, reply: _Reply) -> None:
        body = reply.body
        try:
            if isinstance(body, bytes):
                length = len(body) if reply.length is None else reply.length
            else:
                length = reply.length if reply.length is not None else 0
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(length))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if isinstance(body, bytes):
                self.wfile.write(body[:length])
            else:
                body.seek(0)
                _copy_exactly(body, self.wfile, length)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer
        finally:
            if not isinstance(body, bytes):
                body.close()


def _copy_exactly(source: IO[bytes], target: Any, length: int, chunk: int = 1024 * 1024) -> None:
    """Copy ``length`` bytes from ``source`` to ``target``."""
    remaining = length
    while remaining > 0:
        data = source.read(min(chunk, remaining))
        if not data:
            raise OSError("archive shorter than announced")
        target.write(data)
        remaining -= len(data)
