"""HPACK (RFC 7541): the decoder of a peer's header blocks, and the few literal fields the
gRPC server writes.

The server never adds to the peer's dynamic table (its answers are the same two or three fields,
written as literals "without indexing"), so only decoding keeps state. gRPC clients send each call's
headers mostly as references to their dynamic table after the first call; what is Huffman-coded
(a new ``grpc-timeout``, a first ``:path``) is decoded once per distinct byte string and cached.
"""

from __future__ import annotations

from collections import deque

from modelshelf.serve.http2.hpack_tables import HUFFMAN_CODES, STATIC_TABLE

#: RFC 7541 §4.1: an entry's size counts its name, its value and 32 bytes.
ENTRY_OVERHEAD = 32
#: Huffman strings decoded, by their bytes; bounded so a peer cannot grow it without end.
HUFFMAN_CACHE_ENTRIES = 1024
#: Longer Huffman strings are decoded each time, not cached (header values of gRPC calls
#: that repeat -- paths, user agents, timeouts -- are far shorter).
HUFFMAN_CACHE_MAX_BYTES = 256
#: Header blocks kept decoded per connection (those that leave the table as it was), and the
#: longest kept: a gRPC client's repeated calls are a few indexed bytes each.
CACHED_BLOCKS = 64
CACHED_BLOCK_BYTES = 512

_STATIC_COUNT = len(STATIC_TABLE) - 1
_EOS = 256
#: Code length → {code: symbol}, shortest lengths first (the common characters).
_CODES_BY_LENGTH: list[tuple[int, dict[int, int]]] = []
for _symbol, (_code, _length) in enumerate(HUFFMAN_CODES):
    for _known_length, _codes in _CODES_BY_LENGTH:
        if _known_length == _length:
            _codes[_code] = _symbol
            break
    else:
        _CODES_BY_LENGTH.append((_length, {_code: _symbol}))
_CODES_BY_LENGTH.sort()
_LONGEST = _CODES_BY_LENGTH[-1][0]


class HpackError(Exception):
    """A header block this decoder cannot read: a COMPRESSION_ERROR of the connection."""


class HeaderListTooLargeError(Exception):
    """The decoded header list is larger than the limit this side advertised."""


class HpackDecoder:
    """One connection's decoder: its dynamic table lives as long as the connection."""

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 16384) -> None:
        #: The limit this side advertised (SETTINGS_HEADER_TABLE_SIZE); the peer may lower it.
        self.max_allowed_table_size = max_table_size
        self.max_table_size = max_table_size
        self.max_header_list_size = max_header_list_size
        self._table: deque[tuple[bytes, bytes]] = deque()
        self._table_size = 0
        self._huffman_cache: dict[bytes, bytes] = {}
        #: Blocks that left the dynamic table as it was, with their fields: a client sends the
        #: same few indexed bytes on every call. Emptied whenever the table changes.
        self._decoded: dict[bytes, tuple[tuple[tuple[bytes, bytes], ...], int]] = {}
        self._decoded_changed = False

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header fields of one complete header block, in order."""
        known = self._decoded.get(block)
        if known is not None and known[1] <= self.max_header_list_size:
            return list(known[0])
        self._decoded_changed = False
        headers, listed = self._decode(block)
        if not self._decoded_changed and len(block) <= CACHED_BLOCK_BYTES:
            if len(self._decoded) >= CACHED_BLOCKS:
                self._decoded.clear()
            self._decoded[block] = (tuple(headers), listed)
        return headers

    def _decode(self, block: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
        """The block's fields and their size as a header list (RFC 7540 §6.5.2)."""
        headers: list[tuple[bytes, bytes]] = []
        listed = 0
        at, end = 0, len(block)
        first = True
        try:
            while at < end:
                byte = block[at]
                if byte & 0x80:  # indexed field
                    index, at = _integer(block, at, 7)
                    field = self._entry(index)
                elif byte & 0x40:  # literal with incremental indexing
                    field, at = self._literal(block, at, 6)
                    self._add(field)
                elif byte & 0x20:  # dynamic table size update: only before the first field
                    if not first:
                        raise HpackError("a table size update after a header field")
                    size, at = _integer(block, at, 5)
                    if size > self.max_allowed_table_size:
                        raise HpackError(
                            f"table size update to {size} above the {self.max_allowed_table_size} "
                            "allowed"
                        )
                    self.max_table_size = size
                    self._table_changed()
                    self._evict(0)
                    continue
                else:  # literal without indexing (0000) or never indexed (0001)
                    field, at = self._literal(block, at, 4)
                first = False
                listed += len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
                headers.append(field)
        except IndexError:
            raise HpackError("header block ends inside a field") from None
        if listed > self.max_header_list_size:
            # Raised only after the whole block was read: the dynamic table stays in step
            # with the peer's, so the connection survives the refused stream.
            raise HeaderListTooLargeError(
                f"header list of {listed} bytes; at most {self.max_header_list_size}"
            )
        return headers, listed

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if index == 0:
            raise HpackError("index 0")
        if index <= _STATIC_COUNT:
            return STATIC_TABLE[index]
        dynamic = index - _STATIC_COUNT - 1
        if dynamic >= len(self._table):
            raise HpackError(f"index {index} beyond the tables")
        return self._table[dynamic]

    def _literal(self, block: bytes, at: int, prefix: int) -> tuple[tuple[bytes, bytes], int]:
        index, at = _integer(block, at, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, at = self._string(block, at)
        value, at = self._string(block, at)
        return (name, value), at

    def _string(self, block: bytes, at: int) -> tuple[bytes, int]:
        huffman = block[at] & 0x80
        length, at = _integer(block, at, 7)
        end = at + length
        if end > len(block):
            raise HpackError("a string runs past the header block")
        raw = block[at:end]
        if not huffman:
            return raw, end
        if length > HUFFMAN_CACHE_MAX_BYTES:
            return huffman_decode(raw), end
        decoded = self._huffman_cache.get(raw)
        if decoded is None:
            decoded = huffman_decode(raw)
            if len(self._huffman_cache) >= HUFFMAN_CACHE_ENTRIES:
                self._huffman_cache.clear()
            self._huffman_cache[raw] = decoded
        return decoded, end

    def _add(self, field: tuple[bytes, bytes]) -> None:
        self._table_changed()
        size = len(field[0]) + len(field[1]) + ENTRY_OVERHEAD
        if size > self.max_table_size:  # §4.4: an entry larger than the table empties it
            self._table.clear()
            self._table_size = 0
            return
        self._evict(size)
        self._table.appendleft(field)
        self._table_size += size

    def _table_changed(self) -> None:
        """Indexes now name other fields: no decoded block holds any more."""
        self._decoded.clear()
        self._decoded_changed = True

    def _evict(self, room: int) -> None:
        while self._table and self._table_size + room > self.max_table_size:
            name, value = self._table.pop()
            self._table_size -= len(name) + len(value) + ENTRY_OVERHEAD


def _integer(block: bytes, at: int, prefix: int) -> tuple[int, int]:
    """RFC 7541 §5.1: an integer in a ``prefix``-bit prefix, continued in 7-bit groups."""
    mask = (1 << prefix) - 1
    value = block[at] & mask
    at += 1
    if value < mask:
        return value, at
    shift = 0
    while True:
        byte = block[at]
        at += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 28:
            raise HpackError("an integer longer than 4 continuation bytes")


def huffman_decode(data: bytes) -> bytes:
    """RFC 7541 §5.2: decode ``data``; the padding must be at most 7 bits, all ones.

    The bits are read a byte at a time into a small accumulator: shifting the whole string as
    one integer costs its length per symbol, seconds for a 64 KiB header value a peer may send.
    """
    out = bytearray()
    bits = left = at = 0  # ``left`` bits of ``bits`` not decoded yet
    end = len(data)
    while True:
        while left < _LONGEST and at < end:
            bits = bits << 8 | data[at]
            at += 1
            left += 8
        if not left:
            break
        # The next ``_LONGEST`` bits, padded with ones past the end (as EOS's prefix would be).
        if left >= _LONGEST:
            window = bits >> (left - _LONGEST)
        else:
            window = bits << (_LONGEST - left) | ((1 << (_LONGEST - left)) - 1)
        for length, codes in _CODES_BY_LENGTH:
            symbol = codes.get(window >> (_LONGEST - length))
            if symbol is not None:
                break
        else:  # pragma: no cover - every 30-bit window starts with some code
            raise HpackError("no Huffman code matches")
        if length > left:  # only padding is left: it must be shorter than a byte, all ones
            if left > 7 or bits != (1 << left) - 1:
                raise HpackError("invalid Huffman padding")
            break
        if symbol == _EOS:
            raise HpackError("EOS inside a Huffman string")
        out.append(symbol)
        left -= length
        bits &= (1 << left) - 1
    return bytes(out)


def literal_field(name: bytes, value: bytes) -> bytes:
    """A field written as a literal without indexing, with a new name (no Huffman)."""
    return b"\x00" + _length(len(name)) + name + _length(len(value)) + value


def _length(value: int) -> bytes:
    """A string length: §5.1's integer in a 7-bit prefix, Huffman bit clear."""
    if value < 0x7F:
        return bytes((value,))
    out = bytearray((0x7F,))
    value -= 0x7F
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
