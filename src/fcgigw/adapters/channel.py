"""The seam between adapters and the server: what a running request can do with its wire.

Adapters (WSGI now, ASGI later) talk to a RequestChannel; the server layer implements it on a
real connection and tests implement it in memory. Keeping the seam a Protocol lets the adapters
stay free of sockets and threads.
"""

from __future__ import annotations

from typing import Final, Protocol

from ..protocol import Role

Params = tuple[tuple[bytes, bytes], ...]


class ClientDisconnected(OSError):
    """The web server went away (EOF, RST, write error) or aborted the request (§5.4). An
    OSError, as the ASGI spec asks of send() on a closed connection, and as mod_wsgi and
    Django (UnreadablePostError) have a failed read of the request body."""


#: What reading a body that the web server stopped sending before its end raises with.
INPUT_CUT_SHORT: Final = "the web server went away before the end of the request body"


class RequestChannel(Protocol):
    """One FastCGI request as an adapter sees it."""

    @property
    def request_id(self) -> int:
        """The FastCGI request id (for logs)."""

    @property
    def role(self) -> Role:
        """The role the web server asked for (§6)."""

    @property
    def params(self) -> Params:
        """The PARAMS pairs exactly as received, in order, repeats kept."""

    @property
    def aborted(self) -> bool:
        """True once ABORT_REQUEST arrived or the connection was lost."""

    def read_input(self, size: int) -> bytes:
        """Up to ``size`` bytes of STDIN, blocking until some arrive; b"" at its end (§3.3).
        Raises ClientDisconnected when the request is aborted or the web server goes away
        before that end: the body is not whole (§6.2)."""

    def read_data(self, size: int) -> bytes:
        """Up to ``size`` bytes of FCGI_DATA (the Filter role's file, §6.4), blocking until
        some arrive; b"" at its end, and at once for the other roles; raises as read_input."""

    def send_stdout(self, data: bytes) -> None:
        """Write STDOUT bytes now (waits for the socket); raises ClientDisconnected."""

    def send_stderr(self, data: bytes) -> None:
        """Write FCGI_STDERR bytes (the web server logs them, web-servers.md §3)."""

    def finish(self, app_status: int, last_stdout: bytes = b"") -> None:
        """End the request: ``last_stdout`` then END_REQUEST, in one write where it fits."""
