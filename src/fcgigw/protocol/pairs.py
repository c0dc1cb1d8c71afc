"""Name-value pairs (FastCGI 1.0 §3.4): PARAMS and GET_VALUES content, both directions."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .constants import MAX_PAIR_LENGTH, MAX_SHORT_PAIR_LENGTH
from .errors import LocalProtocolError, RemoteProtocolError

_LONG = struct.Struct(">I")
_LONG_FLAG = 0x80000000

Pair = tuple[bytes, bytes]


def _encode_length(length: int) -> bytes:
    # §3.4: lengths of 127 bytes and less in one byte, longer ones always in four bytes with
    # the high bit set.
    if length <= MAX_SHORT_PAIR_LENGTH:
        return bytes((length,))
    if length > MAX_PAIR_LENGTH:
        raise LocalProtocolError(f"name or value of {length} bytes is too long for §3.4")
    return _LONG.pack(length | _LONG_FLAG)


def encode_pairs(pairs: Iterable[Pair]) -> bytes:
    """Encode pairs in order, each name and value as given (bytes, no terminating NUL)."""
    parts: list[bytes] = []
    for name, value in pairs:
        parts += (_encode_length(len(name)), _encode_length(len(value)), name, value)
    return b"".join(parts)


def _long_length(data: bytes, offset: int) -> tuple[int, int]:
    """The four-byte form at ``offset`` (high bit set): (length, offset after it)."""
    if offset + 4 > len(data):
        raise RemoteProtocolError("name-value pair truncated inside a length (§3.4)")
    return _LONG.unpack_from(data, offset)[0] & MAX_PAIR_LENGTH, offset + 4


def decode_pairs(data: bytes, *, max_pairs: int) -> list[Pair]:
    """Decode a complete name-value pair stream.

    ``max_pairs`` bounds the count (a stream of empty pairs costs 2 bytes each); exceeding it
    raises RemoteProtocolError naming the limit.
    """
    pairs: list[Pair] = []
    offset = 0
    end = len(data)
    while offset < end:
        # The one-byte form is by far the most common (§3.4): take it without a call.
        name_length = data[offset]
        if name_length > MAX_SHORT_PAIR_LENGTH:
            name_length, offset = _long_length(data, offset)
        else:
            offset += 1
        if offset >= end:
            raise RemoteProtocolError("name-value pair truncated inside a length (§3.4)")
        value_length = data[offset]
        if value_length > MAX_SHORT_PAIR_LENGTH:
            value_length, offset = _long_length(data, offset)
        else:
            offset += 1
        value_start = offset + name_length
        value_end = value_start + value_length
        if value_end > end:
            raise RemoteProtocolError("name-value pair runs past the end of its stream (§3.4)")
        if len(pairs) >= max_pairs:
            raise RemoteProtocolError(
                f"more than {max_pairs} params in one request", limit="max_params_count"
            )
        pairs.append((data[offset:value_start], data[value_start:value_end]))
        offset = value_end
    return pairs
