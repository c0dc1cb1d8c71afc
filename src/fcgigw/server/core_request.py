"""What the connection core knows of one request: its input streams, its response's
progress, and when its END_REQUEST may go (§5.5; web-servers.md §2). No I/O here either."""

from __future__ import annotations

import logging
from typing import Final, Protocol

from ..adapters.channel import ClientDisconnected, Params
from ..protocol import OutputData, RecordType, RequestStarted, Role, ServerConnection

#: After the response, how long nginx's body may pause before END_REQUEST goes out without
#: the rest of it: nginx stops sending the body once it has the response (possibly mid-record)
#: and waits for END_REQUEST. Every other server (and one that does not say what it is)
#: sends the whole body whatever the answer, and pauses when the client's upload does; they
#: fail when END_REQUEST comes first (Caddy answers 502, Apache cuts the response short,
#: HAProxy leaves the client's next request hanging, h2o aborts), so only a body silent for
#: the body_stall_timeout_seconds setting (``CoreRequest.stall_seconds``) is given up.
INPUT_QUIET_SECONDS: Final = 0.3
#: SERVER_SOFTWARE of nginx and its forks (as their fastcgi_params send it), lowercased.
_STOPS_SENDING_ONCE_ANSWERED: Final = (b"nginx", b"openresty", b"angie", b"tengine", b"freenginx")

NEVER: Final = float("inf")
logger = logging.getLogger("fcgigw.server")
#: What an app wrote to its error stream (wsgi.errors) that the web server could not take.
stderr_logger = logging.getLogger("fcgigw.stderr")
_FILTER: Final = Role.FILTER
_STDERR: Final = RecordType.STDERR


class RequestHandler(Protocol):
    """The backend's side of one request: where its input goes."""

    def feed(self, data: bytes, stream: RecordType) -> None:
        """Bytes of STDIN (or a Filter's DATA, §6.4) arrived."""

    def end_input(self, stream: RecordType) -> None:
        """The stream's empty record arrived (§3.3)."""

    def abort(self) -> None:
        """ABORT_REQUEST (§5.4) or the connection was lost."""

    def input_pending(self) -> bool:
        """Input the app has not read yet, in the backend's buffers or still in the socket:
        while there is, a body that ended short (InputEndedShort) is not judged silent."""


class RequestStarter(Protocol):
    """Called for each request whose PARAMS are whole: start the app, return its handler."""

    def __call__(self, request: CoreRequest) -> RequestHandler: ...


class CoreRequest:
    """One request as the core tracks it (the backend's channel holds it). Its records are
    made by its connection's protocol core: the backend asks the request for them."""

    __slots__ = (
        "_protocol",
        "aborted",
        "bytes_sent",
        "deadline",
        "done",
        "end_record_due",
        "ended",
        "finished",
        "handler",
        "held_status",
        "keep_connection",
        "params",
        "quiet_at",
        "quiet_seconds",
        "request_id",
        "role",
        "short_at",
        "short_by",
        "stall_seconds",
        "started_at",
        "status",
        "streams",
        "timed_out",
    )

    def __init__(
        self,
        started: RequestStarted,
        protocol: ServerConnection,
        now: float,
        deadline: float,
        stall_seconds: float,
    ) -> None:
        self._protocol = protocol
        self.request_id = started.request_id
        self.role = started.role
        self.keep_connection = started.keep_connection
        self.params: Params = started.params
        self.started_at = now
        #: Input streams of the role (§6): STDIN, and DATA for a Filter.
        self.streams = 2 if started.role is _FILTER else 1
        #: The input streams whose end the app has seen.
        self.ended: set[RecordType] = set()
        #: STDIN ended at CONTENT_LENGTH bytes; its empty record is still to come.
        self.end_record_due = False
        self.handler: RequestHandler | None = None
        self.aborted = False  # ABORT_REQUEST, lost connection or timeout: output is pointless
        self.timed_out = False
        self.finished = False  # the app's response is complete (END_REQUEST sent or held)
        self.done = False  # END_REQUEST sent, or the connection is gone: the id is free
        self.deadline = deadline  # the request timeout
        self.quiet_at = NEVER  # while END_REQUEST is held: when to send it anyway
        #: How long a body may stay silent before it is given up (once answered, or short).
        self.stall_seconds = stall_seconds
        self.quiet_seconds = stall_seconds  # how long the body may pause while held
        #: After STDIN ended short of CONTENT_LENGTH (InputEndedShort): when to give the
        #: rest up, and how many bytes were missing.
        self.short_at = NEVER
        self.short_by = 0
        self.held_status = 0
        self.bytes_sent = 0
        self.status = b""

    @property
    def input_ended(self) -> bool:
        """Every input stream of the role has had its empty record."""
        return len(self.ended) == self.streams and not self.end_record_due

    @property
    def held(self) -> bool:
        """The response is out, its END_REQUEST waits for the end of the body."""
        return self.quiet_at != NEVER

    # -- the response ----------------------------------------------------------------------

    def output(self, data: bytes) -> bytes:
        """The records for STDOUT bytes; ClientDisconnected once the request cannot answer."""
        if self.aborted or self.done:
            raise ClientDisconnected(f"request {self.request_id}: the web server went away")
        self._note_output(data)
        return self._protocol.send(OutputData(self.request_id, data))

    def error_output(self, data: bytes) -> bytes:
        """The records for FCGI_STDERR bytes. Once the request is over for the web server
        they go to fcgigw's log instead (wsgi.errors must not raise because the web server
        left, and an app's traceback must not vanish: Flask writes its own there)."""
        if self.aborted or self.finished or self.done:
            stderr_logger.warning(
                "request %d (over for the web server) wrote to its error stream: %s",
                self.request_id,
                data.decode("utf-8", "replace").rstrip("\n"),
            )
            return b""
        return self._protocol.send(OutputData(self.request_id, data, _STDERR))

    def finish(self, app_status: int, last_stdout: bytes, now: float) -> bytes:
        """The last STDOUT bytes, and END_REQUEST (§5.5) unless the web server is still
        sending the body: then it is held (see ``held``) until release()."""
        self.finished = True
        if self.aborted and not self.timed_out:
            last_stdout = b""  # nobody reads it; a timeout's 504 still goes out
        if last_stdout:
            self._note_output(last_stdout)
        if self.input_ended or self.aborted:
            self.done = True
            return self._protocol.end_response(self.request_id, last_stdout, app_status)
        self.held_status = app_status
        if stops_sending_once_answered(self.params):
            self.quiet_seconds = INPUT_QUIET_SECONDS
        self.quiet_at = now + self.quiet_seconds
        if last_stdout:
            return self._protocol.send(OutputData(self.request_id, last_stdout))
        return b""

    def input_came(self, now: float) -> None:
        """Input for a held END_REQUEST: the web server is still sending, keep holding."""
        self.quiet_at = now + self.quiet_seconds

    def ended_short(self, missing: int, now: float) -> None:
        """STDIN's empty record came ``missing`` bytes before CONTENT_LENGTH (§6.2): its
        client failed to send them, or the rest is still to come (mod_fcgid). The rest is
        waited for until the body has been silent for ``stall_seconds`` with all that came
        read by the app (gives_up_the_rest)."""
        self.short_at = now + self.stall_seconds
        self.short_by = missing

    def gives_up_the_rest(self, now: float) -> bool:
        """At ``short_at``: True (and logged) if the request is to be aborted, so that the
        app reads an error; else the wait starts again, the app having input to read."""
        if self.handler is not None and self.handler.input_pending():
            self.short_at = now + self.stall_seconds
            return False
        self.short_at = NEVER
        logger.warning(
            "request %d: its body ended %d bytes before its CONTENT_LENGTH and nothing more "
            "came in %g s: aborted (the client left mid-upload, FastCGI §6.2)",
            self.request_id,
            self.short_by,
            self.stall_seconds,
        )
        return True

    def release(self) -> bytes:
        """The held END_REQUEST: the input ended, went quiet, or was aborted."""
        self.quiet_at = NEVER
        self.done = True
        return self._protocol.end_response(self.request_id, b"", self.held_status)

    def _note_output(self, data: bytes) -> None:
        if not self.bytes_sent and data.startswith(b"Status: "):
            # Every response fcgigw writes starts with its Status line (header_block).
            self.status = data[8:11]
        self.bytes_sent += len(data)


def stops_sending_once_answered(params: Params) -> bool:
    """nginx (and its forks), by their SERVER_SOFTWARE: see INPUT_QUIET_SECONDS."""
    for name, value in params:
        if name == b"SERVER_SOFTWARE":
            return value.lower().startswith(_STOPS_SENDING_ONCE_ANSWERED)
    return False
