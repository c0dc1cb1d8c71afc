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
- ``output``/``finish`` for a request's response, returning the bytes to write;
- ``tick(now)`` when ``next_deadline`` has passed; it returns the requests that ran past the
  request timeout, which the backend answers with a 504 (``adapters.response.timed_out``);
- ``stop(now)`` for a graceful stop;
- after each call: write ``data_to_send()``, then close the socket if ``should_close`` (all of
  the input read: ``input_complete``, a plain close; else half-close and drop the rest).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from ..adapters.channel import ClientDisconnected, Params
from ..config import Config
from ..protocol import (
    AbortRequest,
    ConnectionClosed,
    InputData,
    InputEnd,
    OutputData,
    ProtocolSettings,
    RecordType,
    RemoteProtocolError,
    RequestStarted,
    Role,
    ServerConnection,
)
from ..protocol.events import NeedData

logger = logging.getLogger("fcgigw.server")

#: After the response, how long the web server's body may pause before END_REQUEST goes out
#: without the rest of it. h2o 2.2 aborts if END_REQUEST comes while it still sends the body;
#: nginx stops sending the body once answered (possibly mid-record) and waits for it.
INPUT_QUIET_SECONDS = 0.3
#: During a graceful stop, how long a just-accepted connection may take to send its request
#: (closing it at once failed requests during reloads under load).
FIRST_RECORD_WAIT_SECONDS = 1.0

_STDIN = RecordType.STDIN
_STDERR = RecordType.STDERR
_FILTER = Role.FILTER
_AUTHORIZER = Role.AUTHORIZER
_NEVER = float("inf")
_GRACEFUL_STOP = "graceful stop"


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The settings a connection core reads, taken once from the validated Config."""

    protocol: ProtocolSettings
    #: Seconds a connection may take to send a whole PARAMS stream; 0 waits forever.
    header_timeout_seconds: int = 30
    #: Seconds a kept connection may stay idle between requests; 0 keeps it forever.
    idle_timeout_seconds: int = 300
    #: Seconds a request may run before it is answered 504; 0 is no limit.
    request_timeout_seconds: int = 0

    @classmethod
    def from_config(cls, config: Config, *, concurrent_requests: int) -> CoreSettings:
        """``concurrent_requests``: what this backend can run at once, reported to the web
        server as FCGI_MAX_REQS (§4.1): the thread count for WSGI, but for ASGI every
        connection's share, since one event loop runs them all."""
        protocol = config.protocol_settings
        if protocol.max_requests != concurrent_requests:
            protocol = ProtocolSettings(
                max_params_bytes=protocol.max_params_bytes,
                max_params_count=protocol.max_params_count,
                max_concurrent_requests_per_connection=(
                    protocol.max_concurrent_requests_per_connection
                ),
                multiplex_connections=protocol.multiplex_connections,
                roles=protocol.roles,
                max_connections=protocol.max_connections,
                max_requests=concurrent_requests,
            )
        return cls(
            protocol=protocol,
            header_timeout_seconds=config.header_timeout_seconds,
            idle_timeout_seconds=config.idle_timeout_seconds,
            request_timeout_seconds=config.request_timeout_seconds,
        )


class RequestHandler(Protocol):
    """The backend's side of one request: where its input goes."""

    def feed(self, data: bytes, stream: RecordType) -> None:
        """Bytes of STDIN (or a Filter's DATA, §6.4) arrived."""

    def end_input(self, stream: RecordType) -> None:
        """The stream's empty record arrived (§3.3)."""

    def abort(self) -> None:
        """ABORT_REQUEST (§5.4), the connection was lost, or the request timed out."""


class RequestStarter(Protocol):
    """Called for each request whose PARAMS are whole: start the app, return its handler."""

    def __call__(self, request: CoreRequest) -> RequestHandler: ...


class CoreRequest:
    """One request as the core tracks it (the backend's channel holds it)."""

    __slots__ = (
        "aborted",
        "bytes_sent",
        "deadline",
        "done",
        "ended",
        "finished",
        "handler",
        "held_status",
        "keep_connection",
        "params",
        "quiet_at",
        "request_id",
        "role",
        "started_at",
        "status",
        "streams",
        "timed_out",
    )

    def __init__(self, started: RequestStarted, now: float, deadline: float) -> None:
        self.started_at = now
        self.request_id = started.request_id
        self.role = started.role
        self.keep_connection = started.keep_connection
        self.params: Params = started.params
        #: Input streams of the role (§6): STDIN, and DATA for a Filter.
        self.streams = 2 if started.role is _FILTER else 1
        self.ended: set[RecordType] = set()
        self.handler: RequestHandler | None = None
        self.aborted = False  # ABORT_REQUEST, lost connection or timeout: output is pointless
        self.timed_out = False
        self.finished = False  # the app's response is complete (END_REQUEST sent or held)
        self.done = False  # END_REQUEST sent, or the connection is gone: the id is free
        self.deadline = deadline  # the request timeout
        self.quiet_at = _NEVER  # while END_REQUEST is held: when to send it anyway
        self.held_status = 0
        self.bytes_sent = 0
        self.status = b""

    @property
    def input_ended(self) -> bool:
        """Every input stream of the role has had its empty record."""
        return len(self.ended) == self.streams


class ConnectionCore:
    """Everything the server decides about one connection; see the module docstring."""

    def __init__(
        self, settings: CoreSettings, peer: str, start_request: RequestStarter, now: float
    ) -> None:
        self.settings = settings
        self.peer = peer
        self.protocol = ServerConnection(settings.protocol)
        self.requests: dict[int, CoreRequest] = {}
        self._start_request = start_request
        self._outbox: list[bytes] = []
        #: Nothing received yet: accepted, its web server's first records still on the way.
        self.fresh = True
        #: Close the socket once data_to_send() is written.
        self.should_close = False
        #: The peer is gone or broke the protocol: nothing more is worth sending.
        self.lost = False
        #: Every request ended so far had its input read to its end (see module docstring).
        self.input_complete = True
        self.stopping = False
        self._held = 0  # requests whose END_REQUEST waits for the end of their input
        self._deadline = _NEVER
        self._deadline_setting = ""
        self._arm("header_timeout_seconds", settings.header_timeout_seconds, now)

    # -- deadlines -------------------------------------------------------------------------

    def _arm(self, setting: str, seconds: float, now: float) -> None:
        self._deadline_setting = setting
        self._deadline = now + seconds if seconds > 0 else _NEVER

    @property
    def next_deadline(self) -> float:
        """When ``tick`` has something to do next (infinity: nothing is timed)."""
        deadline = self._deadline
        for request in self.requests.values():
            deadline = min(deadline, request.deadline)
            deadline = min(deadline, request.quiet_at)
        return deadline

    @property
    def held_deadline(self) -> float:
        """When the first held END_REQUEST goes out anyway (infinity: none is held)."""
        if not self._held:
            return _NEVER
        return min(request.quiet_at for request in self.requests.values())

    def tick(self, now: float) -> list[CoreRequest]:
        """Act on the deadlines passed by ``now``; the requests that ran past the request
        timeout are returned, marked aborted, for the backend to answer (a 504)."""
        if now >= self._deadline and not self.should_close:
            self._time_out(now)
        expired: list[CoreRequest] = []
        for request in list(self.requests.values()):
            if now >= request.quiet_at:
                # nginx stopped sending the body once answered: end without the rest.
                self._release_end(request)
            elif now >= request.deadline and not request.finished:
                request.deadline = _NEVER
                request.timed_out = request.aborted = True
                self.input_complete = False  # its body is not waited for
                expired.append(request)
        if not self.requests:
            self._after_requests(now)
        return expired

    def _time_out(self, now: float) -> None:
        setting = self._deadline_setting
        if setting == _GRACEFUL_STOP:
            logger.info("closing connection from %s: no request during the stop", self.peer)
        else:
            what = "was idle" if setting == "idle_timeout_seconds" else "sent no complete request"
            seconds = getattr(self.settings, setting)
            logger.info(
                "closing connection from %s: it %s for %d s (setting %s)",
                self.peer,
                what,
                seconds,
                setting,
            )
        self._lose()

    # -- input -----------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Feed what the socket gave: bytes, or b"" when the peer closed its side (§3.5)."""
        if self.lost:
            return
        if self._deadline_setting == "idle_timeout_seconds" and data:
            # The first bytes of a request after an idle spell: its PARAMS must come in time.
            self._arm("header_timeout_seconds", self.settings.header_timeout_seconds, now)
        self.fresh = False
        protocol = self.protocol
        protocol.receive_data(data)
        while not self.lost:
            try:
                event = protocol.next_event()
            except RemoteProtocolError as error:
                limit = f" (setting {error.limit})" if error.limit else ""
                logger.warning("closing connection from %s: %s%s", self.peer, error, limit)
                self._lose()
                return
            automatic = protocol.data_to_send()
            if automatic:
                self._outbox.append(automatic)
            # The events are final classes: an identity test of the type, not isinstance.
            kind = type(event)
            if kind is NeedData:
                break
            if kind is InputData:
                self._input(event, now)  # type: ignore[arg-type]
            elif kind is RequestStarted:
                self._start(event, now)  # type: ignore[arg-type]
            elif kind is InputEnd:
                self._input_end(event)  # type: ignore[arg-type]
            elif kind is AbortRequest:
                self._abort(event.request_id)  # type: ignore[union-attr]
            elif kind is ConnectionClosed:
                self._lose()
        if not self.requests:
            self._after_requests(now)

    def _start(self, event: RequestStarted, now: float) -> None:
        self._deadline = _NEVER  # the PARAMS are whole: no header timeout now
        seconds = self.settings.request_timeout_seconds
        request = CoreRequest(event, now, now + seconds if seconds else _NEVER)
        self.requests[event.request_id] = request
        if request.role is _AUTHORIZER:
            # §6.3: an Authorizer's input ends with its PARAMS (the protocol says InputEnd at
            # once), but lighttpd sends an empty STDIN record after them.
            self.input_complete = False
        request.handler = self._start_request(request)

    def _input(self, event: InputData, now: float) -> None:
        request = self.requests.get(event.request_id)
        if request is None or request.aborted:
            return
        if request.finished:
            request.quiet_at = now + INPUT_QUIET_SECONDS  # still sending: keep holding
            return  # the response is out; the rest of the input is read and dropped
        assert request.handler is not None
        request.handler.feed(event.data, event.stream)

    def _input_end(self, event: InputEnd) -> None:
        request = self.requests.get(event.request_id)
        if request is None:
            return
        request.ended.add(event.stream)
        if request.finished:
            if request.input_ended:
                self._release_end(request)
        elif request.handler is not None and not request.aborted:
            request.handler.end_input(event.stream)

    def _abort(self, request_id: int) -> None:
        request = self.requests.get(request_id)
        if request is None:
            return
        request.aborted = True
        self.input_complete = False  # the rest of its body may still come
        if request.finished:
            self._release_end(request)
        elif request.handler is not None:
            request.handler.abort()

    def _lose(self) -> None:
        """The connection is over (EOF, reset, protocol error, timeout): every request on it
        is aborted, nothing more is sent."""
        self.lost = self.should_close = True
        self._outbox.clear()
        self._held = 0
        requests = list(self.requests.values())
        self.requests.clear()
        for request in requests:
            request.done = request.aborted = True
            if not request.finished and request.handler is not None:
                request.handler.abort()

    def lose(self) -> None:
        """The backend saw the socket fail (a write error, a reset)."""
        if not self.lost:
            self._lose()

    # -- output ----------------------------------------------------------------------------

    def output(self, request: CoreRequest, data: bytes) -> bytes:
        """The records for STDOUT bytes; ClientDisconnected once the request cannot answer."""
        if request.aborted or request.done:
            raise ClientDisconnected(f"request {request.request_id}: the web server went away")
        self._note_output(request, data)
        return self.protocol.send(OutputData(request.request_id, data))

    def error_output(self, request: CoreRequest, data: bytes) -> bytes:
        """The records for FCGI_STDERR bytes; nothing once the request is over (wsgi.errors
        must not raise because the web server left)."""
        if request.aborted or request.finished or request.done:
            return b""
        return self.protocol.send(OutputData(request.request_id, data, _STDERR))

    def finish(
        self, request: CoreRequest, app_status: int, last_stdout: bytes, now: float
    ) -> bytes:
        """The end of the response: the last STDOUT bytes, and END_REQUEST (§5.5) unless the
        web server is still sending the body (held until it ends or goes quiet)."""
        if request.finished or request.done:
            return b""
        request.finished = True
        if request.aborted and not request.timed_out:
            last_stdout = b""  # nobody reads it; a timeout's 504 still goes out
        if last_stdout:
            self._note_output(request, last_stdout)
        if request.input_ended or request.aborted:
            data = self.protocol.end_response(request.request_id, last_stdout, app_status)
            self._forget(request, now)
            return data
        self.input_complete = False
        request.held_status = app_status
        request.quiet_at = now + INPUT_QUIET_SECONDS
        self._held += 1
        if last_stdout:
            return self.protocol.send(OutputData(request.request_id, last_stdout))
        return b""

    def _release_end(self, request: CoreRequest) -> None:
        """Send a held END_REQUEST: the input ended, went quiet, or was aborted."""
        if request.done or request.quiet_at == _NEVER:
            return
        request.quiet_at = _NEVER
        self._held -= 1
        self._outbox.append(
            self.protocol.end_response(request.request_id, b"", request.held_status)
        )
        self._forget(request, None)

    def _forget(self, request: CoreRequest, now: float | None) -> None:
        request.done = True
        del self.requests[request.request_id]
        if not self.requests and now is not None:
            self._after_requests(now)

    def _after_requests(self, now: float) -> None:
        """No request is active: close (§5.1, a stop) or keep the connection idle."""
        if self.should_close:
            return
        protocol = self.protocol
        stopped = self.stopping and not self.fresh and not protocol.buffered_bytes
        if protocol.should_close or stopped:
            self.should_close = True
            return
        if not self.fresh and self._deadline_setting != "idle_timeout_seconds":
            if protocol.buffered_bytes:
                return  # part of the next request: its header deadline runs on
            self._arm("idle_timeout_seconds", self.settings.idle_timeout_seconds, now)

    @property
    def idle(self) -> bool:
        """No request in progress, not even part of one: the connection may be parked."""
        return not self.requests and not self.protocol.buffered_bytes and not self.should_close

    @property
    def has_output(self) -> bool:
        """data_to_send() has something."""
        return bool(self._outbox)

    @property
    def input_pending(self) -> bool:
        """Some request's body may still be on its way (the web server may be sending it)."""
        return any(not r.input_ended and not r.aborted for r in self.requests.values())

    def data_to_send(self) -> bytes:
        """Bytes to write now (management answers, refusals, held END_REQUESTs)."""
        outbox = self._outbox
        if not outbox:
            return b""
        data = b"".join(outbox)
        outbox.clear()
        return data

    @staticmethod
    def _note_output(request: CoreRequest, data: bytes) -> None:
        if not request.bytes_sent and data.startswith(b"Status: "):
            # Every response fcgigw writes starts with its Status line (header_block).
            request.status = data[8:11]
        request.bytes_sent += len(data)

    # -- stopping --------------------------------------------------------------------------

    def stop(self, now: float) -> None:
        """A graceful stop: an idle connection closes now; a busy one after its requests; one
        accepted just before the stop gets FIRST_RECORD_WAIT_SECONDS to send its request,
        which is served, and then it closes."""
        if self.stopping or self.should_close:
            return
        self.stopping = True
        if self.fresh or (not self.requests and self.protocol.buffered_bytes):
            self._deadline_setting = _GRACEFUL_STOP
            self._deadline = min(self._deadline, now + FIRST_RECORD_WAIT_SECONDS)
        elif not self.requests:
            self.should_close = True
