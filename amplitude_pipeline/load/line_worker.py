"""The line worker: a process that turns an event object's bytes into records, beside the loader.

A load has two halves: inflating and reading the lines into records
(:func:`~amplitude_pipeline.load.line_records.line_chunks`, pure CPU, most of a load's Python
work), and reducing them per user and writing each batch to PostgreSQL. In one Python process
the two take turns holding the GIL; on a machine with two cores the worker gives the first half
a core of its own. The loader reads the object from S3 (its retries and resumption stay where
they were) and hands the compressed bytes on; the worker sends back the records, in chunks that
say where batches end, and stops at the first line that cannot be loaded, as the loader did
in-process.

The worker is a fresh interpreter (``python -m amplitude_pipeline.load.line_worker``), not a fork
of the loader: the loader may be a Dagster process with threads of its own, and forking those is
unsafe. It imports the transform and nothing of S3, the database or Dagster (~0.2 s). It talks
over two pipes of its own; its standard error is the loader's. It ends with the object, when the
loader closes its pipe or goes away, or when the loader's :class:`LineWorker` ends it.

Messages to the worker: the setup (pickled), then the object's bytes in frames tagged ``D``
(data), ``E`` (end of the object) or ``F`` (reading failed, with how). From the worker: pickled
:class:`~amplitude_pipeline.load.line_records.LineChunk`\\ s, the last one finished or failed, or
a :class:`WorkerFailure` when something unexpected stopped it.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

from amplitude_pipeline.inflate import READ_CHUNK, Readable
from amplitude_pipeline.load.line_records import LineChunk, ReadFailedError, line_chunks
from amplitude_pipeline.retries import describe_error
from amplitude_pipeline.transform.mapping import FieldMappings

__all__ = ["LineWorker", "LineWorkerError"]

_DATA: Final = b"D"
_END: Final = b"E"
_READ_FAILED: Final = b"F"
_STOP_SECONDS: Final = 5.0
_PIPE_BYTES: Final = 1 << 20
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[2])


class LineWorkerError(RuntimeError):
    """The worker stopped before its last chunk (it died, or failed unexpectedly)."""


@dataclass(frozen=True)
class WorkerFailure:
    """What stopped the worker, when it was not a line (those end the chunks)."""

    description: str


@dataclass(frozen=True)
class _Setup:
    mappings: FieldMappings
    begin_after: int
    batch_size: int


class LineWorker:
    """One load's worker process: start it, feed it the object's bytes, take its records.

    A failed read of the object (beyond the body's own retries) ends the chunks with a
    retryable failure at the next line (:func:`~amplitude_pipeline.load.line_records.unreadable`).
    """

    def __init__(self, mappings: FieldMappings, *, begin_after: int, batch_size: int) -> None:
        self._setup = _Setup(mappings, begin_after, batch_size)
        self._stopped = threading.Event()
        self._finished = False
        self._feeding = False
        self._process: subprocess.Popen[bytes] | None = None
        self._to_worker: Connection | None = None
        self._from_worker: Connection | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> LineWorker:
        into_worker, to_worker = _pipe()
        from_worker, out_of_worker = _pipe()
        environment = dict(os.environ)
        # The worker imports this very package, wherever the loader found it.
        environment["PYTHONPATH"] = os.pathsep.join(
            [_PACKAGE_ROOT, *filter(None, [environment.get("PYTHONPATH")])]
        )
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(into_worker), str(out_of_worker)],
                pass_fds=(into_worker, out_of_worker),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=environment,
            )
        except BaseException:
            for descriptor in (to_worker, from_worker):
                os.close(descriptor)
            raise
        finally:
            os.close(into_worker)
            os.close(out_of_worker)
        self._to_worker = Connection(to_worker, readable=False)
        self._from_worker = Connection(from_worker, writable=False)
        with contextlib.suppress(OSError):  # it died at once: chunks() says how
            self._to_worker.send_bytes(pickle.dumps(self._setup, protocol=pickle.HIGHEST_PROTOCOL))
        return self

    def __exit__(self, *exc_info: object) -> None:
        """End the worker: it has finished, or its records are not wanted."""
        self._stopped.set()
        assert self._process is not None and self._from_worker is not None and self._to_worker is not None
        if not self._finished:
            self._process.kill()  # a write the feeding thread is blocked in fails at once
        self._from_worker.close()
        if not self._feeding:
            self._to_worker.close()  # else the feeding thread closes it: it may be writing to it
        try:
            self._process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def chunks(self, body: Readable) -> Iterator[LineChunk]:
        """The records of the object that ``body`` reads, which a thread hands to the worker."""
        assert self._from_worker is not None, "use the worker in a with block"
        self._feeding = True
        threading.Thread(target=self._feed, args=(body,), name="line-worker-feed", daemon=True).start()
        while True:
            try:
                item = pickle.loads(self._from_worker.recv_bytes())
            except EOFError:
                raise LineWorkerError(f"the line worker stopped ({self._exit_description()})") from None
            if isinstance(item, WorkerFailure):
                raise LineWorkerError(f"the line worker failed: {item.description}")
            if item.finished or item.failure is not None:
                self._finished = True
                yield item
                return
            yield item

    def _feed(self, body: Readable) -> None:
        """The object's bytes to the worker, until they end, fail, or are not wanted any more."""
        assert self._to_worker is not None
        try:
            while not self._stopped.is_set():
                try:
                    chunk = body.read(READ_CHUNK)
                    frame = _DATA + chunk if chunk else _END
                except Exception as error:  # said to the worker, which ends its chunks there
                    frame = _READ_FAILED + describe_error(error).encode()
                self._to_worker.send_bytes(frame)
                if not frame.startswith(_DATA):
                    return
        except OSError:
            return  # the worker has gone: chunks() says why
        finally:
            self._to_worker.close()

    def _exit_description(self) -> str:
        assert self._process is not None
        try:
            code = self._process.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            return "its pipe closed while it still runs"
        return f"exit code {code}" if code >= 0 else f"killed by signal {-code}"


def _pipe() -> tuple[int, int]:
    """A pipe that holds a few chunks (Linux's default 64 KiB holds a quarter of one): neither
    process waits for the other while that is busy for a moment."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # more than the system allows; not Linux
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    return read_end, write_end


class _ForwardedBytes:
    """The object's bytes as the loader forwards them: a stream for :func:`line_chunks`."""

    def __init__(self, source: Connection) -> None:
        self._source = source
        self._ended = False

    def read(self, size: int, /) -> bytes:
        if self._ended:
            return b""
        frame = self._source.recv_bytes()
        tag, payload = frame[:1], frame[1:]
        if tag == _DATA:
            return payload
        self._ended = True
        if tag == _READ_FAILED:
            raise ReadFailedError(payload.decode())
        return b""


def main(argv: list[str]) -> int:
    """The worker's life: its setup, then the records of the object, or the reason it stopped."""
    source = Connection(int(argv[1]), writable=False)
    sink = Connection(int(argv[2]), readable=False)
    # Reference counting frees what a chunk leaves behind (nothing here makes cycles): the
    # collector would only walk the memo again and again.
    gc.disable()
    try:
        setup: _Setup = pickle.loads(source.recv_bytes())
        for item in line_chunks(
            _ForwardedBytes(source),
            setup.mappings,
            begin_after=setup.begin_after,
            batch_size=setup.batch_size,
        ):
            sink.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
    except (EOFError, BrokenPipeError):
        return 0  # the loader has gone, or does not want the rest
    except BaseException as error:
        with contextlib.suppress(OSError):
            sink.send_bytes(pickle.dumps(WorkerFailure(describe_error(error))))
        raise
    return 0


if __name__ == "__main__":
    # Run as the module itself, not as __main__, so that what it pickles names classes the loader has.
    from amplitude_pipeline.load import line_worker

    sys.exit(line_worker.main(sys.argv))
