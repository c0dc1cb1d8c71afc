"""Request bodies: spilled to a temporary file past the memory threshold, order kept."""

from __future__ import annotations

import os

from fcgigw.server.buffers import SpillBuffer


def test_small_bodies_stay_in_memory() -> None:
    buffer = SpillBuffer(memory_limit_bytes=100)
    buffer.append(b"hello ")
    buffer.append(b"world")
    assert not buffer.spilled
    assert len(buffer) == 11
    reads = [buffer.read(8), buffer.read(2), buffer.read(8)]
    assert reads == [b"hello wo", b"rl", b"d"]  # the size asked, across chunks
    assert buffer.read(8) == b""


def test_bodies_past_the_threshold_spill_and_come_back_in_order() -> None:
    buffer = SpillBuffer(memory_limit_bytes=10)
    chunks = [bytes([65 + n]) * 7 for n in range(20)]  # 140 bytes, far past 10
    for chunk in chunks:
        buffer.append(chunk)
    assert buffer.spilled
    assert len(buffer) == 140
    out = b""
    while data := buffer.read(9):
        out += data
    assert out == b"".join(chunks)
    assert not buffer.spilled
    buffer.append(b"again")  # after draining, memory is used again
    assert not buffer.spilled
    assert buffer.read(100) == b"again"
    buffer.close()


def test_close_deletes_the_temporary_file() -> None:
    buffer = SpillBuffer(memory_limit_bytes=1)
    buffer.append(b"spilled bytes")
    descriptors_before = len(os.listdir("/proc/self/fd"))
    buffer.close()
    assert len(os.listdir("/proc/self/fd")) == descriptors_before - 1
    assert len(buffer) == 0
    assert buffer.read(5) == b""
