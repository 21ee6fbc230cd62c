"""Bounded Content-Encoding decoding: every step small, every encoding servers send, typed failures."""

from __future__ import annotations

import gzip
import zlib

import pytest

from resilient_llm._http._decode import DecodeError, Decoder, UnsupportedEncodingName, make_decoder

pytestmark = pytest.mark.timeout(20)

TEXT = b"The quick brown fox. " * 5000


def decode_all(decoder: Decoder, data: bytes, *, feed: int = 1000, step: int = 4096) -> bytes:
    out: list[bytes] = []
    for i in range(0, len(data), feed):
        decoder.feed(data[i : i + feed])
        while piece := decoder.pull(step):
            assert len(piece) <= step
            out.append(piece)
    decoder.finish()
    return b"".join(out)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110 deflate: zlib-wrapped
        ("deflate", lambda d: (c := zlib.compressobj(wbits=-zlib.MAX_WBITS)).compress(d) + c.flush()),  # raw
        ("identity, gzip", gzip.compress),
    ],
)
def test_each_accepted_encoding_round_trips_in_small_steps(encoding: str, compress: object) -> None:
    decoder = make_decoder(encoding)
    assert decoder is not None
    assert decode_all(decoder, compress(TEXT)) == TEXT  # type: ignore[operator]


def test_several_gzip_members_in_a_row_are_one_body() -> None:
    data = gzip.compress(b"abc" * 1000) + gzip.compress(b"def" * 1000)
    assert decode_all(Decoder(gzip=True), data) == b"abc" * 1000 + b"def" * 1000


def test_a_bomb_never_gives_more_than_one_step_per_pull() -> None:
    bomb = gzip.compress(b"\0" * (32 << 20), compresslevel=9)  # 32 MiB in ~32 KB
    decoder = Decoder(gzip=True)
    decoder.feed(bomb)
    assert len(decoder.pull(65536)) == 65536
    assert len(decoder.pull(65536)) == 65536  # the rest waits for the next pull


@pytest.mark.parametrize("value", [None, "", "identity", " Identity "])
def test_identity_needs_no_decoder(value: str | None) -> None:
    assert make_decoder(value) is None


@pytest.mark.parametrize("value", ["br", "zstd", "gzip, gzip", "compress"])
def test_encodings_we_did_not_offer_are_refused(value: str) -> None:
    with pytest.raises(UnsupportedEncodingName):
        make_decoder(value)


def test_corrupt_data_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="corrupt gzip"):
        decode_all(Decoder(gzip=True), b"\x1f\x8b\x08\x00" + b"\xff" * 100)


def test_a_cut_stream_is_a_decode_error_at_the_end() -> None:
    data = gzip.compress(TEXT)
    with pytest.raises(DecodeError, match="ended before"):
        decode_all(Decoder(gzip=True), data[: len(data) // 2])


def test_an_empty_body_labelled_gzip_is_empty() -> None:
    decoder = Decoder(gzip=True)
    assert decoder.pull(10) == b""
    decoder.finish()
