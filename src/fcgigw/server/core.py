"""The connection core: what the server decides about one FastCGI connection, free of I/O.

Bytes, "peer closed" and clock readings go in; bytes to send, requests to start, input for a
request, and "close now" come out. It owns record routing (through the protocol core), the
answers to management records, when END_REQUEST may go (§5.5, web-servers.md §2), when the
connection closes (§5.1), the header, idle and request deadlines, what a graceful stop does,
and the log lines for all of these. The backends (threads for WSGI, asyncio for ASGI) only
move bytes, schedule, and call the app: nothing here is decided twice.

A backend drives one ``ConnectionCore`` per connection, from one thread at a time:

- ``receive(data, now)`` with what the socket gave (b"" at EOF); requests start through the
  ``RequestStarter`` it was given, and their input goes to the ``RequestHandler`` it returned;
- ``request.output``/``error_output`` for a request's response, and ``finish`` for its end,
  returning the bytes to write;
- ``tick(now)`` when ``next_deadline`` has passed; it returns the requests that ran past the
  request timeout, which the backend answers with a 504 (``adapters.response.timed_out``);
- ``stop(now)`` for a graceful stop;
- after each call: write ``data_to_send()``, then close the socket if ``should_close`` (all of
  the input read: ``input_complete``, a plain close; else half-close and drop the rest).
"""

from __future__ import annotations

import logging

from ..protocol import (
    AbortRequest,
    ConnectionClosed,
    InputData,
    InputEnd,
    InputEndedShort,
    RemoteProtocolError,
    RequestStarted,
    ServerConnection,
)
from ..protocol.events import NeedData
from .core_life import FIRST_RECORD_WAIT_SECONDS, ConnectionLife
from .core_request import (
    INPUT_QUIET_SECONDS,
    CoreRequest,
    RequestHandler,
    RequestStarter,
)
from .core_requests import RequestTable
from .core_settings import CoreSettings

logger = logging.getLogger("fcgigw.server")

__all__ = [
    "FIRST_RECORD_WAIT_SECONDS",
    "INPUT_QUIET_SECONDS",
    "ConnectionCore",
    "CoreRequest",
    "CoreSettings",
    "RequestHandler",
    "RequestStarter",
]


class ConnectionCore:
    """Everything the server decides about one connection; see the module docstring. It
    routes the protocol core's events: the requests on it are a RequestTable, its own
    deadlines a ConnectionLife."""

    def __init__(
        self, settings: CoreSettings, peer: str, start_request: RequestStarter, now: float
    ) -> None:
        self.settings = settings
        self.peer = peer
        self.protocol = ServerConnection(settings.protocol)
        self._outbox: list[bytes] = []
        self.table = RequestTable(self.protocol, self._outbox, start_request, settings)
        self.requests = self.table.requests
        #: Close the socket once data_to_send() is written.
        self.should_close = False
        #: The peer is gone or broke the protocol: nothing more is worth sending.
        self.lost = False
        #: The peer closed its side after whole records (§3.5): nothing more can come.
        self.peer_closed = False
        #: Its own deadlines (header, idle, a stop's wait): when it closes for want of a request.
        self.life = ConnectionLife(
            settings.header_timeout_seconds, settings.idle_timeout_seconds, now
        )

    @property
    def input_complete(self) -> bool:
        """Every request ended so far had its input read to its end: a plain close."""
        return self.table.input_complete

    # -- clock -----------------------------------------------------------------------------

    @property
    def next_deadline(self) -> float:
        """When ``tick`` has something to do next (infinity: nothing is timed)."""
        if not self.requests:  # the usual case at each sweep: no request running
            return self.life.at
        return min(self.life.at, self.table.next_deadline)

    @property
    def read_deadline(self) -> float:
        """When a reader's wait for input must end, for ``tick`` (infinity: never)."""
        return self.table.read_deadline

    def tick(self, now: float) -> list[CoreRequest]:
        """Act on the deadlines passed by ``now``; the requests that ran past the request
        timeout are returned, marked aborted, for the backend to answer (a 504)."""
        if now >= self.life.at and not self.should_close:
            self.life.log_expiry(self.peer)
            self.lose()
        expired = self.table.tick(now)
        if not self.requests:
            self._after_requests(now)
        return expired

    # -- input -----------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Feed what the socket gave: bytes, or b"" when the peer closed its side (§3.5).
        Once the core has decided to close (a stop, §5.1), what comes is dropped unread, as
        the close would drop it: a request that came after the last one ended, while the
        backend was closing, is not started only to be cut off mid-body."""
        if self.should_close:
            return
        self.life.received(data, now)
        protocol = self.protocol
        table = self.table
        protocol.receive_data(data)
        while not self.lost:
            try:
                event = protocol.next_event()
            except RemoteProtocolError as error:
                limit = f" (setting {error.limit})" if error.limit else ""
                logger.warning("closing connection from %s: %s%s", self.peer, error, limit)
                self.lose()
                return
            automatic = protocol.data_to_send()
            if automatic:
                self._outbox.append(automatic)
            # The events are final classes: an identity test of the type, not isinstance.
            kind = type(event)
            if kind is NeedData:
                break
            if kind is InputData:
                table.input(event, now)  # type: ignore[arg-type]
            elif kind is RequestStarted:
                self.life.request_started()
                table.start(event, now)  # type: ignore[arg-type]
            elif kind is InputEnd:
                table.input_end(event)  # type: ignore[arg-type]
            elif kind is AbortRequest:
                table.abort(event.request_id)  # type: ignore[union-attr]
            elif kind is InputEndedShort:
                table.input_ended_short(event, now)  # type: ignore[arg-type]
            elif kind is ConnectionClosed:
                self.peer_closed = True
                self.lose()
        if not self.requests:
            self._after_requests(now)

    def lose(self) -> None:
        """The connection is over (EOF, reset, protocol error, timeout; or the backend saw the
        socket fail or closed it): every request on it is aborted, nothing more is sent."""
        if not self.lost:
            self.lost = self.should_close = True
            self._outbox.clear()
            self.table.lose()

    # -- output ----------------------------------------------------------------------------

    def finish(
        self, request: CoreRequest, app_status: int, last_stdout: bytes, now: float
    ) -> bytes:
        """The end of the response (see CoreRequest.finish); b"" if it already ended."""
        data = self.table.finish(request, app_status, last_stdout, now)
        if not self.requests:
            self._after_requests(now)
        return data

    def _after_requests(self, now: float) -> None:
        """No request is running: close (§5.1, a stop) or keep the connection idle."""
        if self.should_close:
            return
        if self.protocol.should_close or self.life.no_request_running(now, self.partial_request):
            self.should_close = True

    @property
    def partial_request(self) -> bool:
        """Part of a request has come (a BEGIN_REQUEST, some PARAMS) but it has not started."""
        protocol = self.protocol
        return protocol.active_requests > len(self.requests) or protocol.buffered_bytes > 0

    @property
    def idle(self) -> bool:
        """No request in progress, not even part of one: the connection may be parked."""
        protocol = self.protocol
        return not (protocol.active_requests or protocol.buffered_bytes or self.should_close)

    @property
    def has_output(self) -> bool:
        """data_to_send() has something."""
        return bool(self._outbox)

    @property
    def input_pending(self) -> bool:
        """Some request's body may still be on its way (the web server may be sending it)."""
        return self.table.input_pending

    def data_to_send(self) -> bytes:
        """Bytes to write now (management answers, refusals, held END_REQUESTs)."""
        outbox = self._outbox
        if not outbox:
            return b""
        data = b"".join(outbox)
        outbox.clear()
        return data

    # -- stopping --------------------------------------------------------------------------

    def stop(self, now: float) -> None:
        """A graceful stop: see ConnectionLife.stop."""
        if self.life.stopping or self.should_close:
            return
        if self.life.stop(now, bool(self.requests), self.partial_request):
            self.should_close = True
