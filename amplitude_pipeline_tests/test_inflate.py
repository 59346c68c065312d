"""The gzip inflater every reader uses: zlib's behaviour (members, eof, unused data), zlib's errors."""

import gzip
import zlib

import pytest

from amplitude_pipeline.inflate import GzipMemberInflater


def test_it_inflates_one_member_and_hands_back_what_follows():
    inflater = GzipMemberInflater()
    text = inflater.decompress(gzip.compress(b"a\nb\n") + gzip.compress(b"c\n"))
    assert (text, inflater.eof) == (b"a\nb\n", True)
    assert gzip.decompress(inflater.unused_data) == b"c\n"


def test_a_member_cut_short_is_not_at_its_end():
    inflater = GzipMemberInflater()
    body = gzip.compress(b"x" * 10_000)
    inflater.decompress(body[: len(body) // 2])
    assert not inflater.eof


@pytest.mark.parametrize("data", [b"plain text, not gzip", gzip.compress(b"a\n")[:10] + b"\xff" * 50])
def test_bytes_that_are_not_gzip_raise_zlibs_error(data):
    with pytest.raises(zlib.error):
        GzipMemberInflater().decompress(data)


def test_a_wrong_header_reads_as_zlibs_header_error():
    with pytest.raises(zlib.error, match="incorrect header check"):
        GzipMemberInflater().decompress(b"plain text, not gzip")
