"""Name-value pairs (FastCGI 1.0 §3.4): PARAMS and GET_VALUES content, both directions."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from .constants import MAX_PAIR_LENGTH, MAX_SHORT_PAIR_LENGTH
from .errors import LocalProtocolError, RemoteProtocolError

_LONG: Final = struct.Struct(">I")
_LONG_FLAG: Final = 0x80000000

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


_TRUNCATED_LENGTH: Final = "name-value pair truncated inside a length (§3.4)"
_PAST_THE_END: Final = "name-value pair runs past the end of its stream (§3.4)"


def _pair_at(data: bytes, offset: int) -> tuple[int, int, int]:
    """Bounds of the pair at ``offset``, lengths in either form, checked against the end:
    (name start, value start, value end)."""
    lengths = []
    for _ in range(2):
        if offset >= len(data):
            raise RemoteProtocolError(_TRUNCATED_LENGTH)
        if data[offset] > MAX_SHORT_PAIR_LENGTH:  # §3.4: the four-byte form, high bit set
            if offset + 4 > len(data):
                raise RemoteProtocolError(_TRUNCATED_LENGTH)
            lengths.append(_LONG.unpack_from(data, offset)[0] & MAX_PAIR_LENGTH)
            offset += 4
        else:
            lengths.append(data[offset])
            offset += 1
    value_start = offset + lengths[0]
    value_end = value_start + lengths[1]
    if value_end > len(data):
        raise RemoteProtocolError(_PAST_THE_END)
    return offset, value_start, value_end


def decode_pairs(data: bytes, *, max_pairs: int) -> list[Pair]:
    """Decode a complete name-value pair stream.

    ``max_pairs`` bounds the count (a stream of empty pairs costs 2 bytes each); exceeding it
    raises RemoteProtocolError naming the limit.
    """
    # The hot loop of every request (nginx sends ~20 pairs): locals only, the count bounded by
    # the loop itself, and the usual pair -- both lengths under 128, so one byte each (§3.4)
    # -- recognised with one test; _pair_at takes the others. Written for the compiled build
    # too: a plain counter and pairs.append (a bound-method alias or a range() loop variable
    # would each cost a Python object per pair there).
    pairs: list[Pair] = []
    offset = 0
    end = len(data)
    count = 0
    try:
        while count < max_pairs:
            if offset == end:
                return pairs
            name_length = data[offset]
            value_length = data[offset + 1]  # IndexError: one byte left, a length cut short
            if (name_length | value_length) > MAX_SHORT_PAIR_LENGTH:
                name_start, value_start, offset = _pair_at(data, offset)
            else:
                name_start = offset + 2
                value_start = name_start + name_length
                offset = value_start + value_length
                if offset > end:
                    raise RemoteProtocolError(_PAST_THE_END)
            pairs.append((data[name_start:value_start], data[value_start:offset]))
            count += 1
    except IndexError:
        raise RemoteProtocolError(_TRUNCATED_LENGTH) from None
    if offset < end:
        _pair_at(data, offset)  # a malformed pair is reported as such, as it always was
        raise RemoteProtocolError(
            f"more than {max_pairs} params in one request", limit="max_params_count"
        )
    return pairs
