"""Inflating gzip members with ISA-L (python-isal), zlib's drop-in that inflates faster.

The loader's read-ahead thread and the export's verification of each member spend most of
their time inflating: on the benchmark's week ISA-L does it about 2.4 times as fast as zlib
(119 against 49 MB/s of compressed events on this machine), which leaves the second core to
parsing and to PostgreSQL. Failures come out as ``zlib.error`` either way, so callers handle
one exception type.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Final, Protocol, cast

from isal import isal_zlib

# isal's stubs type its error as an instance: it is the exception class igzip_lib.IsalError.
_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast(type[Exception], isal_zlib.error))

GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
READ_CHUNK: Final = 1 << 18
"""Compressed bytes read at a time: ~1.5 MiB of lines, so that a few blocks in flight are not tens of MiB."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"


class GzipMemberInflater:
    """``zlib.decompressobj(wbits=16 + MAX_WBITS)``: one gzip member's text, then ``eof`` and
    ``unused_data`` (the bytes after the member)."""

    __slots__ = ("_inflater",)

    def __init__(self) -> None:
        self._inflater = isal_zlib.decompressobj(GZIP_WBITS)

    def decompress(self, data: bytes) -> bytes:
        try:
            return self._inflater.decompress(data)
        except _ERRORS as error:
            raise zlib.error(_zlib_wording(str(error))) from None

    @property
    def eof(self) -> bool:
        return bool(self._inflater.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._inflater.unused_data)


def _zlib_wording(message: str) -> str:
    """ISA-L's messages in zlib's words, which the pipeline's own messages build on."""
    if "wrapper" in message:
        return "Error -3 while decompressing data: incorrect header check"
    return message


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def gzip_line_blocks(stream: Readable, chunk_size: int = READ_CHUNK) -> Iterator[list[bytes]]:
    """The lines (without their newline) of a gzip stream of one or more members, in blocks: each
    chunk read is inflated and split at once, instead of ``GzipFile``'s small reads and per-line
    calls. A stream that ends inside a member raises ``EOFError``, as ``gzip`` does, after every
    whole line before it; bytes that are not gzip raise ``zlib.error``.

    A UTF-8 byte order mark before the first line is an encoding marker
    (Windows tools add it), not data; zero bytes after the last member are padding (tape and
    block tools add it), as ``gzip -d`` reads them.
    """
    decompressor = GzipMemberInflater()
    in_member = False
    members = 0
    in_padding = False
    first_line = True
    member_offset = 0  # where the current member starts in the compressed object
    consumed = 0
    pending = b""
    while chunk := stream.read(chunk_size):
        consumed += len(chunk)
        while chunk:
            if in_padding or (members and not in_member and not chunk.strip(b"\0")):
                if chunk.strip(b"\0"):
                    raise zlib.error(f"data after the zero padding that ends the object (byte {consumed:,})")
                in_padding = True
                break
            if not in_member:
                member_offset = consumed - len(chunk)
            in_member = True
            try:
                text = decompressor.decompress(chunk)
            except zlib.error as error:
                raise zlib.error(_not_gzip_message(error, members, member_offset)) from None
            if text:
                lines = (pending + text).split(b"\n")
                pending = lines.pop()
                if first_line and lines:
                    lines[0] = lines[0].removeprefix(_UTF8_BOM)
                    first_line = False
                yield lines
            if not decompressor.eof:
                break
            chunk = decompressor.unused_data
            decompressor = GzipMemberInflater()
            in_member = False
            members += 1
    if in_member:
        raise EOFError("compressed object ended before the end of its last gzip member (truncated?)")
    if pending:
        yield [pending.removeprefix(_UTF8_BOM) if first_line else pending]


def _not_gzip_message(error: zlib.error, members: int, member_offset: int) -> str:
    if "header" not in str(error):
        return f"{error} (in the gzip member that starts at byte {member_offset:,})"
    if members == 0:
        return f"{error}: the object is not gzip-compressed"
    return (
        f"{error}: bytes that are not gzip follow the object's last gzip member (from byte {member_offset:,})"
    )
