"""A request body buffer that stays small in memory and spills to a temporary file.

Bodies normally stream straight to the app; they pile up only when the app is not reading
(another request multiplexed on the same connection is being read). Beyond the threshold the
rest goes to disk (waitress's OverflowableBuffer idea), so memory stays bounded.
"""

from __future__ import annotations

import tempfile
from collections import deque
from typing import IO


def take_front(chunks: deque[bytes], size: int) -> bytes:
    """Up to ``size`` bytes off the front of ``chunks``: as many chunks as fit, the last one
    split if need be, joined once (a web server's body comes in records of 8 KiB or less,
    and an app reads 64 KiB at a time)."""
    parts: list[bytes] = []
    taken = 0
    while chunks and taken < size:
        chunk = chunks.popleft()
        if taken + len(chunk) > size:
            chunks.appendleft(chunk[size - taken :])
            chunk = chunk[: size - taken]
        parts.append(chunk)
        taken += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)  # b"" when none is held


class SpillBuffer:
    """FIFO of bytes: memory up to ``memory_limit_bytes``, a temporary file beyond."""

    __slots__ = ("_chunks", "_file", "_file_read", "_file_write", "_memory_bytes", "memory_limit")

    def __init__(self, memory_limit_bytes: int) -> None:
        self.memory_limit = memory_limit_bytes
        self._chunks: deque[bytes] = deque()
        self._memory_bytes = 0
        self._file: IO[bytes] | None = None
        self._file_read = 0
        self._file_write = 0

    def __len__(self) -> int:
        return self._memory_bytes + self._file_write - self._file_read

    @property
    def spilled(self) -> bool:
        """True while part of the content lives in the temporary file."""
        return self._file_write > self._file_read

    def append(self, data: bytes) -> None:
        """Add bytes at the end; to the file once memory is full or the file is in use."""
        if not self.spilled and self._memory_bytes + len(data) <= self.memory_limit:
            self._chunks.append(data)
            self._memory_bytes += len(data)
            return
        if self._file is None:
            # Lives as long as the buffer; close() deletes it.
            self._file = tempfile.TemporaryFile(prefix="fcgigw-body-")  # noqa: SIM115
        self._file.seek(self._file_write)
        self._file.write(data)
        self._file_write += len(data)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes from the front (memory first, it is older; take_front)."""
        if self._chunks:
            data = take_front(self._chunks, size)
            self._memory_bytes -= len(data)
            return data
        if not self.spilled or self._file is None:
            return b""
        self._file.seek(self._file_read)
        data = self._file.read(min(size, self._file_write - self._file_read))
        self._file_read += len(data)
        if self._file_read == self._file_write:
            self._file_read = self._file_write = 0
            self._file.truncate(0)
        return data

    def close(self) -> None:
        """Drop everything and delete the temporary file."""
        self._chunks.clear()
        self._memory_bytes = 0
        if self._file is not None:
            self._file.close()
            self._file = None
        self._file_read = self._file_write = 0
