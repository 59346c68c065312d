"""The chunked, read-ahead gzip line reader behind every S3 load (no services needed)."""

import gzip
import io
import threading
import time
import zlib

import pytest

from amplitude_pipeline.storage.s3 import iter_gzip_lines

CONTENT = [f'{{"n": {i}, "city": "Москва"}}'.encode() for i in range(500)]


def members(*parts: list[bytes]) -> bytes:
    return b"".join(gzip.compress(b"".join(line + b"\n" for line in part)) for part in parts)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 1 << 20])
def test_lines_of_concatenated_members_come_out_whole_and_in_order(chunk_size):
    body = members(CONTENT[:100], CONTENT[100:101], [], CONTENT[101:])
    assert list(iter_gzip_lines(io.BytesIO(body), chunk_size)) == CONTENT


def test_a_last_line_without_newline_is_still_a_line():
    body = gzip.compress(b"a\n\nb")
    assert list(iter_gzip_lines(io.BytesIO(body))) == [b"a", b"", b"b"]


def test_a_truncated_stream_raises_after_its_whole_lines():
    body = members(CONTENT)
    lines = []
    with pytest.raises(EOFError, match="truncated"):
        for line in iter_gzip_lines(io.BytesIO(body[: len(body) // 2]), 64):
            lines.append(line)
    assert 0 < len(lines) < len(CONTENT)
    assert lines == CONTENT[: len(lines)]


def test_a_consumer_that_stops_early_stops_the_reader_thread():
    body = members(CONTENT * 40)
    before = threading.active_count()
    lines = iter_gzip_lines(io.BytesIO(body), 256)
    assert next(lines) == CONTENT[0]
    lines.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_a_byte_order_mark_before_the_first_line_is_dropped_and_only_there():
    body = gzip.compress(b'\xef\xbb\xbf{"a": 1}\n\xef\xbb\xbf{"b": 2}\n')
    assert list(iter_gzip_lines(io.BytesIO(body), 2)) == [b'{"a": 1}', b'\xef\xbb\xbf{"b": 2}']


def test_zero_padding_after_the_last_member_is_not_data():
    body = members(CONTENT[:10]) + b"\0" * 1000
    assert list(iter_gzip_lines(io.BytesIO(body), 64)) == CONTENT[:10]


def test_data_after_the_padding_is_an_error():
    body = members(CONTENT[:10]) + b"\0" * 100 + b"junk"
    with pytest.raises(zlib.error, match="after the zero padding"):
        list(iter_gzip_lines(io.BytesIO(body), 64))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"not": "compressed"}\n', "the object is not gzip-compressed"),
        (
            members(CONTENT[:3]) + b"trailing text",
            "bytes that are not gzip follow the object's last gzip member",
        ),
    ],
)
def test_bytes_that_are_not_gzip_are_named_as_such(body, message):
    with pytest.raises(zlib.error, match=message):
        list(iter_gzip_lines(io.BytesIO(body)))
