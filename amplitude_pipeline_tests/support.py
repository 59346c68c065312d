"""Helpers shared across the test packages."""

import socket
from dataclasses import dataclass, field


@dataclass
class RecordingLog:
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def info(self, msg: str, /) -> None:
        self.infos.append(msg)

    def warning(self, msg: str, /) -> None:
        self.warnings.append(msg)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
