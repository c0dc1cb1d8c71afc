"""The requests active on one connection, as the connection core routes to them: starting
them, their input, aborts, their ends (held or not), the request deadlines. No I/O."""

from __future__ import annotations

from typing import Final

from ..protocol import InputData, InputEnd, InputEndedShort, RequestStarted, Role, ServerConnection
from .core_request import NEVER, CoreRequest, RequestHandler, RequestStarter
from .core_settings import CoreSettings

_AUTHORIZER: Final = Role.AUTHORIZER


def _no_start(request: CoreRequest) -> RequestHandler:
    raise AssertionError("a lost connection's core started a request")


class RequestTable:
    """Request id -> CoreRequest, and what happens to them; bytes it makes for the web
    server by itself (held END_REQUESTs) go to the connection's ``outbox``."""

    def __init__(
        self,
        protocol: ServerConnection,
        outbox: list[bytes],
        start_request: RequestStarter,
        settings: CoreSettings,
    ) -> None:
        self.requests: dict[int, CoreRequest] = {}
        self._request_timeout_seconds = settings.request_timeout_seconds  # 0: none
        self._body_stall_seconds = settings.body_stall_timeout_seconds
        self._protocol = protocol
        self._outbox = outbox
        self._start_request = start_request
        #: Every request ended so far had its input read to its end (a plain close is safe).
        self.input_complete = True

    def start(self, event: RequestStarted, now: float) -> None:
        timeout = self._request_timeout_seconds
        deadline = now + timeout if timeout else NEVER
        request = CoreRequest(event, self._protocol, now, deadline, self._body_stall_seconds)
        self.requests[event.request_id] = request
        if request.role is _AUTHORIZER:
            # §6.3: an Authorizer's input ends with its PARAMS (the protocol says InputEnd at
            # once), but lighttpd sends an empty STDIN record after them.
            self.input_complete = False
        request.handler = self._start_request(request)

    def input(self, event: InputData, now: float) -> None:
        request = self.requests.get(event.request_id)
        if request is None or request.aborted:
            return
        if request.finished:
            request.input_came(now)  # still sending: keep holding
            return  # the response is out; the rest of the input is read and dropped
        assert request.handler is not None
        request.short_at = NEVER  # (mod_fcgid's stray empty record: the body goes on)
        request.handler.feed(event.data, event.stream)

    def input_ended_short(self, event: InputEndedShort, now: float) -> None:
        request = self.requests.get(event.request_id)
        if request is not None and not request.aborted and not request.finished:
            request.ended_short(event.missing, now)

    def input_end(self, event: InputEnd) -> None:
        request = self.requests.get(event.request_id)
        if request is None:
            return
        stream = event.stream
        if event.at_length:
            # The body is whole for the app; the stream's empty record, still to come,
            # decides when END_REQUEST may go (the web server may be writing it).
            request.end_record_due = True
        elif request.end_record_due:  # that empty record: the app had its end already
            request.end_record_due = False
            if request.finished and request.input_ended:
                self._release(request)
            return
        request.ended.add(stream)
        if request.finished:
            if request.input_ended:
                self._release(request)
        elif request.handler is not None and not request.aborted:
            request.handler.end_input(stream)

    def abort(self, request_id: int) -> None:
        request = self.requests.get(request_id)
        if request is None:
            return
        request.aborted = True
        self.input_complete = False  # the rest of its body may still come
        if request.finished:
            self._release(request)
        elif request.handler is not None:
            request.handler.abort()

    def finish(
        self, request: CoreRequest, app_status: int, last_stdout: bytes, now: float
    ) -> bytes:
        if request.finished or request.done:
            return b""
        data = request.finish(app_status, last_stdout, now)
        if request.done:
            self._remove(request)
        else:
            self.input_complete = False
        return data

    def _release(self, request: CoreRequest) -> None:
        if request.held and not request.done:
            self._outbox.append(request.release())
            self._remove(request)

    def _remove(self, request: CoreRequest) -> None:
        """The request is over for the core: its id is free, and it lets go of its handler
        (the handler holds the request: with both links, every request's objects would wait
        for the cycle collector instead of going when the backend drops them)."""
        del self.requests[request.request_id]
        request.handler = None

    def lose(self) -> None:
        """The connection is gone: every request is aborted and its id free, and no request
        can start any more, so the backend's starter is dropped (it holds the backend's
        connection, which holds this table: a cycle otherwise)."""
        requests = list(self.requests.values())
        self.requests.clear()
        self._start_request = _no_start
        for request in requests:
            request.done = request.aborted = True
            handler = request.handler
            request.handler = None
            if not request.finished and handler is not None:
                handler.abort()

    # -- deadlines ---------------------------------------------------------------------------

    @property
    def next_deadline(self) -> float:
        deadline = NEVER
        for request in self.requests.values():
            deadline = min(deadline, request.deadline, request.quiet_at, request.short_at)
        return deadline

    @property
    def read_deadline(self) -> float:
        deadline = NEVER
        for request in self.requests.values():
            deadline = min(deadline, request.quiet_at, request.short_at)
        return deadline

    def tick(self, now: float) -> list[CoreRequest]:
        """Held END_REQUESTs whose body went quiet go out; requests past their timeout are
        returned, aborted (the rest of their body is not waited for)."""
        expired: list[CoreRequest] = []
        for request in list(self.requests.values()):
            if now >= request.quiet_at:
                # nginx stopped sending the body once answered (or another server's body
                # stalled): end without the rest.
                self._release(request)
            elif now >= request.deadline and not request.finished:
                request.deadline = NEVER
                request.timed_out = request.aborted = True
                self.input_complete = False
                expired.append(request)
            elif now >= request.short_at and request.gives_up_the_rest(now):
                self.abort(request.request_id)
        return expired

    @property
    def input_pending(self) -> bool:
        return any(not r.input_ended and not r.aborted for r in self.requests.values())
