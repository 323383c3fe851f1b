"""The HPACK decoder of the HTTP/2 gRPC server, on RFC 7541's own examples (Appendix C.4:
three requests on one connection, Huffman-coded, sharing a dynamic table) and on malformed
blocks a hostile peer may send."""

from __future__ import annotations

import time

import pytest

from modelshelf.serve.http2.hpack import (
    HeaderListTooLargeError,
    HpackDecoder,
    HpackError,
    huffman_decode,
    literal_field,
)
from modelshelf.serve.http2.hpack_tables import HUFFMAN_CODES


def rfc_example_get(scheme: bytes, path: bytes) -> list[tuple[bytes, bytes]]:
    """The pseudo-headers every request of RFC 7541's Appendix C examples starts with."""
    return [
        (b":method", b"GET"),
        (b":scheme", scheme),
        (b":path", path),
        (b":authority", b"www.example.com"),
    ]


def test_rfc_7541_c4_requests_with_huffman_share_the_dynamic_table():
    decoder = HpackDecoder()
    first = decoder.decode(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))
    assert first == rfc_example_get(b"http", b"/")
    second = decoder.decode(bytes.fromhex("828684be5886a8eb10649cbf"))
    assert second == [*first, (b"cache-control", b"no-cache")]
    third = decoder.decode(bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"))
    assert third == [*rfc_example_get(b"https", b"/index.html"), (b"custom-key", b"custom-value")]


def test_huffman_decodes_the_rfc_examples_and_refuses_bad_padding():
    assert huffman_decode(bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")) == b"www.example.com"
    assert huffman_decode(bytes.fromhex("a8eb10649cbf")) == b"no-cache"
    with pytest.raises(HpackError, match="padding"):
        huffman_decode(b"\x00")  # "0" (00000), then 000: padding must be ones
    with pytest.raises(HpackError, match="padding"):
        huffman_decode(b"\xff\xff")  # 16 bits of ones: padding is at most 7
    with pytest.raises(HpackError, match="EOS"):
        huffman_decode(b"\xff\xff\xff\xfc")  # EOS (30 ones), then 2 bits


def test_a_long_huffman_string_costs_its_length_not_its_square():
    """A peer may send a 64 KiB Huffman-coded header value and the server has one thread:
    16x the bytes take ~16x the time when decoding is linear, ~256x when it is quadratic."""
    text = b"0aces1it"  # 8 symbols of 5 bits: 5 whole bytes, no padding
    bits = 0
    for byte in text:
        code, length = HUFFMAN_CODES[byte]
        assert length == 5
        bits = bits << 5 | code
    chunk = bits.to_bytes(5, "big")

    def seconds(repeats: int) -> float:
        data = chunk * repeats
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            decoded = huffman_decode(data)
            best = min(best, time.perf_counter() - started)
        assert decoded == text * repeats
        return best

    ratio = seconds(13_000) / seconds(812)  # 65,000 and 4,060 bytes
    assert ratio < 64, f"16x the bytes took {ratio:.0f}x the time"


def test_entries_are_evicted_to_fit_the_table_size():
    decoder = HpackDecoder(max_table_size=100)
    # Incremental indexing, new names: 32 + 6 + 6 = 44 bytes each; the third evicts the first.
    block = b"".join(b"\x40\x06" + name + b"\x06" + b"v" * 6 for name in (b"aaaaaa", b"bbbbbb"))
    decoder.decode(block)
    decoder.decode(b"\x40\x06cccccc\x06" + b"v" * 6)
    assert decoder.decode(b"\xbe\xbf") == [(b"cccccc", b"vvvvvv"), (b"bbbbbb", b"vvvvvv")]
    with pytest.raises(HpackError, match="beyond the tables"):
        decoder.decode(b"\xc0")  # index 64: the evicted entry


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"\x80", "index 0"),
        (b"\xff\x00", "beyond the tables"),  # index 127
        (b"\x3f\xe2\x1f", "table size update"),  # to 4,097: above the 4,096 allowed
        (b"\x82\x20", "after a header field"),
        (b"\x00\x05ab", "runs past"),
        (b"\xff\xff\xff\xff\xff\xff\x01", "integer longer"),
    ],
)
def test_malformed_blocks_are_errors_naming_the_fault(block, expected):
    with pytest.raises(HpackError, match=expected):
        HpackDecoder().decode(block)


def test_a_header_list_above_the_limit_fails_after_the_table_is_updated():
    decoder = HpackDecoder(max_header_list_size=100)
    with pytest.raises(HeaderListTooLargeError):
        decoder.decode(b"\x40\x01k\x7f\x00" + b"v" * 127)  # indexed: the table must keep it
    decoder.max_header_list_size = 1000
    assert decoder.decode(b"\xbe") == [(b"k", b"v" * 127)]
    assert HpackDecoder().decode(literal_field(b"grpc-status", b"0")) == [(b"grpc-status", b"0")]


def test_a_block_repeated_decodes_alike_until_the_table_changes():
    """Repeated indexed blocks are kept decoded; a new entry or a table size update shifts the
    indexes, and the same bytes then name the fields the table now holds."""
    decoder = HpackDecoder()
    decoder.decode(b"\x40\x01a\x011")  # a: 1, at index 62
    assert decoder.decode(b"\x83\xbe") == [(b":method", b"POST"), (b"a", b"1")]
    assert decoder.decode(b"\x83\xbe") == [(b":method", b"POST"), (b"a", b"1")]
    decoder.decode(b"\x40\x01b\x012")  # b: 2 at 62, a: 1 now at 63
    assert decoder.decode(b"\x83\xbe") == [(b":method", b"POST"), (b"b", b"2")]
    assert decoder.decode(b"\x20\x83") == [(b":method", b"POST")]  # table emptied
    with pytest.raises(HpackError, match="beyond the tables"):
        decoder.decode(b"\x83\xbe")
    decoder.decode(b"\x3f\xe1\x1f" + b"\x40\x01c\x013")  # back to 4,096 bytes; c: 3
    assert decoder.decode(b"\x83\xbe") == [(b":method", b"POST"), (b"c", b"3")]
    decoder.max_header_list_size = 40  # below the 2 fields' 72: the limit still holds
    with pytest.raises(HeaderListTooLargeError):
        decoder.decode(b"\x83\xbe")
