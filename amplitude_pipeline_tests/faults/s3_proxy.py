"""A fault-injecting HTTP proxy in front of an S3 endpoint (SeaweedFS in the tests).

The client is pointed at the proxy (``endpoint_url=proxy.endpoint_url``) and signs its requests
for the proxy's ``host:port``; the proxy forwards them unchanged (only hop-by-hop ``Expect`` is
answered by the proxy itself), and SeaweedFS checks the signature over the ``Host`` header the
client sent, which it never rewrites. Two faults, chosen by counters so that a test knows they
happened:

- **SlowDown**: request 1, 1 + n, 1 + 2n… (n = ``slowdown_every``) is answered ``503 SlowDown``
  with S3's XML error body, without reaching the server;
- **a cut body**: of the bodies longer than ``cut_after_bytes`` (a ``GET``'s response or an
  upload's request), body 1, 1 + n, 1 + 2n… (n = ``cut_every``) is cut after that many bytes: a
  download gets its status, headers and the first ``cut_after_bytes`` bytes, then the connection
  is closed; an upload is read that far, never forwarded, and its connection is closed unanswered.

And an **outage**: once ``outage_after_bytes`` bytes of downloads have been served, the download
that crosses the mark is cut there and every request after it is answered ``503 SlowDown``, for
as long as the proxy runs.

The same request (method, target, ``Range``) is faulted at most ``max_faults_in_a_row`` times in
a row (the outage aside): the faults are transient, as a real throttle or a dropped connection
is, and a client that retries gets through.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

_HEAD_LIMIT = 64 * 1024
_COPY_CHUNK = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>fault-proxy</RequestId></Error>"
)


@dataclass
class ProxyCounters:
    requests: int = 0
    """Requests received from the client (answered by the proxy or forwarded)."""
    forwarded: int = 0
    slowdowns: int = 0
    cut_downloads: int = 0
    cut_uploads: int = 0
    outage_refusals: int = 0
    """Requests answered SlowDown because the proxy is "down" (``outage_after_bytes``)."""
    methods: dict[str, int] = field(default_factory=dict)
    """Requests received, by method."""


class _ConnectionCut(Exception):
    """The proxy cut the client's connection on purpose."""


class _Message:
    """An HTTP/1.1 head: the start line and the headers (names lower-cased, raw bytes kept)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        lines = raw.decode("latin-1").split("\r\n")
        self.start_line = lines[0]
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()

    @property
    def method(self) -> str:
        return self.start_line.split(" ")[0]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.method, self.start_line.split(" ")[1], self.headers.get("range", ""))

    @property
    def status(self) -> int:
        return int(self.start_line.split(" ")[1])

    def without_header(self, name: str) -> bytes:
        kept = [
            line
            for line in self.raw.split(b"\r\n")
            if not line.lower().startswith(name.lower().encode("latin-1") + b":")
        ]
        return b"\r\n".join(kept)

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class _Stream:
    """A socket read as a byte stream with a small buffer (heads are read up to their blank line)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def read_head(self) -> bytes | None:
        """The next message head (without its final blank line), or None at a clean end of stream."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _HEAD_LIMIT:
                raise ConnectionError("message head too large")
            data = self.sock.recv(_COPY_CHUNK)
            if not data:
                if self._buffer:
                    raise ConnectionError("the stream ended inside a message head")
                return None
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        return head

    def read_some(self, limit: int) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer[:limit], self._buffer[limit:]
            return data
        data = self.sock.recv(min(limit, _COPY_CHUNK))
        if not data:
            raise ConnectionError("the stream ended inside a message body")
        return data

    def read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            data = self.sock.recv(_COPY_CHUNK)
            if not data:
                raise ConnectionError("the stream ended inside a chunked body")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line + b"\r\n"

    def copy_exactly(self, length: int, target: socket.socket | None) -> None:
        remaining = length
        while remaining > 0:
            data = self.read_some(remaining)
            if target is not None:
                target.sendall(data)
            remaining -= len(data)

    def copy_chunked(self, target: socket.socket | None) -> None:
        """Relay a chunked body as it is, up to and including its trailer."""
        while True:
            size_line = self.read_line()
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                trailer = size_line
                while (line := self.read_line()) != b"\r\n":
                    trailer += line
                if target is not None:
                    target.sendall(trailer + b"\r\n")
                return
            if target is not None:
                target.sendall(size_line)
            self.copy_exactly(size + 2, target)  # the chunk and its CRLF


class FaultInjectingS3Proxy:
    """The proxy, serving from background threads; use it as a context manager."""

    def __init__(
        self,
        upstream_url: str,
        *,
        slowdown_every: int | None = None,
        cut_every: int | None = None,
        cut_after_bytes: int = 1 << 20,
        max_faults_in_a_row: int = 2,
        outage_after_bytes: int | None = None,
    ) -> None:
        upstream = urlsplit(upstream_url)
        if upstream.scheme != "http" or upstream.hostname is None:
            raise ValueError(f"the proxy forwards plain HTTP only, not {upstream_url!r}")
        self.upstream = (upstream.hostname, upstream.port or 80)
        self.slowdown_every = slowdown_every
        self.cut_every = cut_every
        self.cut_after_bytes = cut_after_bytes
        self.max_faults_in_a_row = max_faults_in_a_row
        self.outage_after_bytes = outage_after_bytes
        self._downloaded = 0
        self._down = False
        self.counters = ProxyCounters()
        self._lock = threading.Lock()
        self._faults_in_a_row: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self._long_bodies = 0
        self._server = _ThreadingServer(("127.0.0.1", 0), self)
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()

    def snapshot(self) -> ProxyCounters:
        with self._lock:
            return ProxyCounters(
                self.counters.requests,
                self.counters.forwarded,
                self.counters.slowdowns,
                self.counters.cut_downloads,
                self.counters.cut_uploads,
                self.counters.outage_refusals,
                dict(self.counters.methods),
            )

    # -- which request to fault ------------------------------------------------------------

    def _admit(self, request: _Message) -> bool:
        """Count the request; whether it is answered with SlowDown."""
        with self._lock:
            counters = self.counters
            counters.requests += 1
            counters.methods[request.method] = counters.methods.get(request.method, 0) + 1
            if self._down:
                counters.outage_refusals += 1
                return True
            slowdown = (
                self.slowdown_every is not None
                and (counters.requests - 1) % self.slowdown_every == 0
                and self._may_fault(request)
            )
            if slowdown:
                counters.slowdowns += 1
                self._faults_in_a_row[request.key] += 1
            else:
                counters.forwarded += 1
            return slowdown

    def _cut_at(self, request: _Message, response: _Message) -> int | None:
        """How many body bytes to send before cutting this response, or None to send it whole."""
        length = response.content_length
        if request.method != "GET" or response.status not in (200, 206) or length is None:
            return None
        if self.outage_after_bytes is not None:
            with self._lock:
                budget = self.outage_after_bytes - self._downloaded
                if length > budget:
                    self._down = True
                    self.counters.cut_downloads += 1
                    return max(budget, 0)
                self._downloaded += length
        if length <= self.cut_after_bytes:
            return None
        return self.cut_after_bytes if self._cut(request, download=True) else None

    def _cuts_upload(self, request: _Message) -> bool:
        """Whether to cut this request's body after ``cut_after_bytes`` (and never forward it)."""
        length = request.content_length
        return length is not None and length > self.cut_after_bytes and self._cut(request, download=False)

    def _cut(self, request: _Message, *, download: bool) -> bool:
        """Count a long body; whether it is one of those cut."""
        with self._lock:
            self._long_bodies += 1
            cut = (
                self.cut_every is not None
                and (self._long_bodies - 1) % self.cut_every == 0
                and self._may_fault(request)
            )
            if cut:
                self._faults_in_a_row[request.key] += 1
                if download:
                    self.counters.cut_downloads += 1
                else:
                    self.counters.cut_uploads += 1
            return cut

    def _may_fault(self, request: _Message) -> bool:
        """Under the lock."""
        return self._faults_in_a_row[request.key] < self.max_faults_in_a_row

    def _answered(self, request: _Message) -> None:
        with self._lock:
            self._faults_in_a_row.pop(request.key, None)

    # -- one client connection ---------------------------------------------------------------

    def serve_connection(self, client: socket.socket) -> None:
        stream = _Stream(client)
        upstream: socket.socket | None = None
        upstream_stream: _Stream | None = None
        try:
            while (head := stream.read_head()) is not None:
                request = _Message(head)
                expects_continue = request.headers.get("expect", "").lower() == "100-continue"
                if self._admit(request):
                    self._answer_slowdown(client, request, stream, expects_continue)
                    if expects_continue:
                        return  # the body was never sent: the connection cannot be reused
                    continue
                if self._cuts_upload(request):
                    if expects_continue:
                        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    stream.copy_exactly(self.cut_after_bytes, None)
                    raise _ConnectionCut
                if upstream is None or upstream_stream is None:
                    upstream = socket.create_connection(self.upstream, timeout=60)
                    upstream_stream = _Stream(upstream)
                if expects_continue:
                    # Answered here, so that the server sees a plain request (Expect is not signed).
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    upstream.sendall(request.without_header("expect") + b"\r\n\r\n")
                else:
                    upstream.sendall(head + b"\r\n\r\n")
                if request.chunked:
                    stream.copy_chunked(upstream)
                else:
                    stream.copy_exactly(request.content_length or 0, upstream)
                response = self._relay_response(request, upstream_stream, client)
                self._answered(request)
                if response.closes:
                    upstream.close()
                    upstream, upstream_stream = None, None
        except (_ConnectionCut, OSError):
            pass
        finally:
            if upstream is not None:
                upstream.close()

    def _answer_slowdown(
        self, client: socket.socket, request: _Message, stream: _Stream, expects_continue: bool
    ) -> None:
        if not expects_continue:  # the body follows the head: read it, the connection stays usable
            if request.chunked:
                stream.copy_chunked(None)
            else:
                stream.copy_exactly(request.content_length or 0, None)
        close = b"Connection: close\r\n" if expects_continue else b""
        body = b"" if request.method == "HEAD" else _SLOWDOWN_BODY  # S3 answers HEAD without a body
        client.sendall(
            b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            + f"Content-Length: {len(_SLOWDOWN_BODY)}\r\n".encode()
            + close
            + b"\r\n"
            + body
        )

    def _relay_response(self, request: _Message, upstream: _Stream, client: socket.socket) -> _Message:
        while True:
            head = upstream.read_head()
            if head is None:
                raise ConnectionError("the server closed the connection without answering")
            response = _Message(head)
            if response.status >= 200:
                break
            client.sendall(head + b"\r\n\r\n")  # an interim response: the final one follows
        has_body = request.method != "HEAD" and response.status not in _NO_BODY_STATUSES
        cut_at = self._cut_at(request, response) if has_body else None
        client.sendall(head + b"\r\n\r\n")
        if not has_body:
            return response
        if cut_at is not None:
            upstream.copy_exactly(cut_at, client)
            client.shutdown(socket.SHUT_RDWR)
            raise _ConnectionCut
        if response.chunked:
            upstream.copy_chunked(client)
        elif response.content_length is not None:
            upstream.copy_exactly(response.content_length, client)
        else:  # delimited by the end of the connection
            while data := upstream.sock.recv(_COPY_CHUNK):
                client.sendall(data)
            raise _ConnectionCut
        return response


class _Handler(socketserver.BaseRequestHandler):
    server: _ThreadingServer

    def handle(self) -> None:
        self.server.proxy.serve_connection(self.request)


class _ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultInjectingS3Proxy) -> None:
        self.proxy = proxy
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
