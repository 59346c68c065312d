"""Run the Export API simulator as a process: ``python -m amplitude_simulator --port 18080``.

Credentials default to ``AMPLITUDE_API_KEY`` / ``AMPLITUDE_SECRET_KEY`` (then to the
simulator's built-in test keys), so the pipeline and the simulator can share one environment.
Prints ``amplitude simulator listening on http://HOST:PORT`` once ready (never the secrets)
and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import date, datetime
from types import FrameType

from amplitude_simulator.data import SimulatorConfig
from amplitude_simulator.server import SimulatorServer


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def _day_hour(value: str) -> tuple[date, int]:
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH, got {value!r}") from None
    return moment.date(), moment.hour


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m amplitude_simulator",
        description="Serve a deterministic simulation of Amplitude's Export API (/api/2/export).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port (default: 18080)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("AMPLITUDE_API_KEY", "sim-api-key"),
        help="default: $AMPLITUDE_API_KEY, else sim-api-key",
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("AMPLITUDE_SECRET_KEY", "sim-secret-key"),
        help="default: $AMPLITUDE_SECRET_KEY, else sim-secret-key",
    )
    defaults = SimulatorConfig()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--project-id", type=int, default=defaults.project_id)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--events-per-day", type=int, default=defaults.events_per_day)
    parser.add_argument(
        "--empty-day", type=_day, action="append", default=[], metavar="YYYY-MM-DD",
        help="a day without events (the API answers 404); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--too-much-data-hours-over", type=int, default=None, metavar="N",
        help="answer 400 'exceeds 4GB' to requests spanning more than N hours",
    )  # fmt: skip
    parser.add_argument(
        "--too-much-data-hour", type=_day_hour, action="append", default=[], metavar="YYYY-MM-DDTHH",
        help="answer 400 'exceeds 4GB' to any request whose window contains this hour; repeatable",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = SimulatorConfig(
            seed=args.seed,
            project_id=args.project_id,
            users=args.users,
            events_per_day=args.events_per_day,
            empty_days=frozenset(args.empty_day),
            too_much_data_hours_over=args.too_much_data_hours_over,
            too_much_data_hours=frozenset(args.too_much_data_hour),
        )
        server = SimulatorServer(
            config, args.host, args.port, args.api_key, args.secret_key, log_requests=not args.quiet
        )
    except (ValueError, OSError) as error:
        print(f"amplitude simulator: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with server:
        print(f"amplitude simulator listening on {server.base_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
