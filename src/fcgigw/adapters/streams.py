"""File-like wsgi.input over STDIN, wsgi.errors over FCGI_STDERR, and wsgi.file_wrapper."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Final

from .channel import RequestChannel

#: Bytes asked of the channel per read when the app reads "everything" or a line.
READ_CHUNK_BYTES: Final = 64 * 1024


class RequestBodyTooLarge(Exception):
    """The body passed max_request_body_bytes while the app read it (a chunked upload has no
    length to check up front); fcgigw answers 413 when the headers are not out yet."""


class InputStream:
    """wsgi.input (over ``channel.read_input``) and fcgi.data (over ``channel.read_data``): a
    stream as it arrives, ending where the protocol core ends it: at its empty record, or
    with the last of a body's CONTENT_LENGTH bytes (a length that may be absent, "" or
    "-1": web-servers.md §6.2), hence wsgi.input_terminated. A body cut short (the web
    server went away or aborted the request) raises the channel's ClientDisconnected, an
    OSError, rather than end as if it were whole."""

    __slots__ = ("_buffer", "_ended", "_left", "_read")

    def __init__(self, read: Callable[[int], bytes], limit_bytes: int = 0) -> None:
        self._read = read
        self._buffer = b""
        self._ended = False
        self._left = limit_bytes or -1  # bytes still allowed; -1: no limit

    def _next_chunk(self, size: int = READ_CHUNK_BYTES) -> bytes:
        """The next chunk from the channel (up to ``size`` bytes); b"" at the end."""
        if self._ended:
            return b""
        chunk = self._read(size)
        if not chunk:
            self._ended = True
            return b""
        if self._left >= 0:
            self._left -= len(chunk)
            if self._left < 0:
                self._ended = True
                raise RequestBodyTooLarge("the request body is over max_request_body_bytes")
        return chunk

    def _fill(self) -> bool:
        """Append one chunk to the buffer; False at the end of the stream."""
        chunk = self._next_chunk()
        if chunk:
            self._buffer += chunk
        return bool(chunk)

    def read(self, size: int | None = -1) -> bytes:
        """Read ``size`` bytes (fewer only at the end), or everything when size is -1/None.
        The chunks are gathered and joined once: adding each to a buffer would copy what
        it holds again for every chunk."""
        wanted = -1 if size is None or size < 0 else size
        buffer = self._buffer
        if 0 <= wanted <= len(buffer):
            return self._take(wanted)
        parts = [buffer] if buffer else []
        held = len(buffer)
        self._buffer = b""
        while wanted < 0 or held < wanted:
            chunk = self._next_chunk(READ_CHUNK_BYTES if wanted < 0 else wanted - held)
            if not chunk:
                break
            parts.append(chunk)
            held += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if 0 <= wanted < held:  # (a channel gives no more than asked)
            self._buffer = data[wanted:]
            data = data[:wanted]
        return data

    def read1(self, size: int = -1) -> bytes:
        """Whatever is buffered or the next chunk, without waiting for ``size`` bytes."""
        if not self._buffer:
            self._fill()
        return self._take(len(self._buffer) if size < 0 else size)

    def readline(self, size: int | None = -1) -> bytes:
        """One line including its b"\\n" (at most ``size`` bytes)."""
        limit = -1 if size is None else size
        start = 0
        while True:
            newline = self._buffer.find(b"\n", start)
            if newline >= 0:
                end = newline + 1
                break
            if 0 <= limit <= len(self._buffer):
                end = limit
                break
            start = len(self._buffer)
            if not self._fill():
                end = len(self._buffer)
                break
        return self._take(end if limit < 0 else min(end, limit))

    def readlines(self, hint: int = -1) -> list[bytes]:
        """Lines until the end (or until ``hint`` bytes have been read)."""
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def _take(self, size: int) -> bytes:
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class ErrorStream:
    """wsgi.errors: text written here goes to the web server's error log as FCGI_STDERR."""

    __slots__ = ("_channel",)

    def __init__(self, channel: RequestChannel) -> None:
        self._channel = channel

    def write(self, text: str) -> int:
        """Send ``text`` (UTF-8) on FCGI_STDERR; returns the characters written."""
        if text:
            self._channel.send_stderr(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each line (PEP 3333)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is buffered here; present because PEP 3333 requires it."""


class FileWrapper:
    """wsgi.file_wrapper: iterate a file in blocks; closing the response closes the file."""

    __slots__ = ("_block_size", "_file")

    def __init__(self, file: IO[bytes], block_size: int = READ_CHUNK_BYTES) -> None:
        self._file = file
        self._block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        while block := self._file.read(self._block_size):
            yield block

    def close(self) -> None:
        """PEP 3333: the server calls close(), which must close the wrapped file."""
        close: Any = getattr(self._file, "close", None)
        if close is not None:
            close()
