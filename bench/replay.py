"""The Export API's recorded answers, served from disk: ``python -m bench.replay ARCHIVE...``.

Each archive is a day's response body as the simulator serves it (``bench/datasets.py``), named
``YYYY-MM-DD.zip``. A request for that whole UTC day (``start=YYYYMMDDT00&end=YYYYMMDDT23``)
gets it with ``Content-Length``; anything else is a 404. Credentials are not checked.

Why not the simulator itself: it generates events on request at ~50k events/s on this
machine's two cores, which would dominate both the export and the raw copy and compete with
them for CPU; real Amplitude's servers cost the client nothing. Replaying the bytes measures
what the client does with them. Prints ``listening on http://HOST:PORT`` once ready.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import parse_qs, urlsplit

EXPORT_PATH = "/api/2/export"


def _handler(archives: dict[str, Path]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            start, end = query.get("start", [""])[0], query.get("end", [""])[0]
            day = start[:8]
            archive = archives.get(day) if url.path == EXPORT_PATH else None
            if archive is None or start != f"{day}T00" or end != f"{day}T23":
                body = b"No data available for the requested time range"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            size = archive.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            with archive.open("rb") as body_file:
                self.connection.sendfile(body_file)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay")
    parser.add_argument("archives", nargs="+", type=Path, help="YYYY-MM-DD.zip files")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    archives = {path.stem.replace("-", ""): path for path in args.archives}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(archives))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
