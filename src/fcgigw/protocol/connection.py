"""The application side of one FastCGI connection, sans I/O: bytes in, events out.

``receive_data(bytes)`` then ``next_event()`` until NEED_DATA; ``send(event) -> bytes`` for the
response; ``data_to_send()`` for what the protocol answers by itself (GET_VALUES_RESULT,
UNKNOWN_TYPE, refused requests), which §4.1 says should "not involve the application proper".

The receiving half, records to events, is request_input.RequestInput; this class adds what
the server layer asks of a connection and the records of each response (§5.3, §5.5).
"""

from __future__ import annotations

from typing import Final

from .constants import FCGI_STDERR, FCGI_STDOUT, ProtocolStatus
from .errors import LocalProtocolError
from .events import EndRequest, OutputData
from .records import build_end_of_response, build_stream_records
from .request_input import ActiveRequest, RequestInput, end_request_record
from .state import InputState

__all__ = ["ServerConnection", "end_request_record"]

_REQUEST_COMPLETE: Final = int(ProtocolStatus.REQUEST_COMPLETE)


class ServerConnection(RequestInput):
    """One transport connection as the FastCGI application sees it: RequestInput's events,
    the state the server acts on, and the records of each response."""

    # -- state the server layer acts on ---------------------------------------------------

    @property
    def active_requests(self) -> int:
        """Requests begun and not yet ended with END_REQUEST."""
        return len(self._requests)

    @property
    def should_close(self) -> bool:
        """§5.1: a request without FCGI_KEEP_CONN has ended and none is left running."""
        return self._close_when_idle and not self._requests

    @property
    def buffered_bytes(self) -> int:
        """Received bytes not yet turned into events (for read flow control)."""
        return self._records.buffered_bytes

    def input_state(self, request_id: int) -> InputState | None:
        """Where request ``request_id`` is in its input, or None if it is not active."""
        request = self._requests.get(request_id)
        return request.state if request else None

    # -- sending ----------------------------------------------------------------------------

    def send(self, event: OutputData | EndRequest) -> bytes:
        """Bytes for one response event: STDOUT/STDERR data, or the end of the request."""
        request = self._requests.get(event.request_id)
        if request is None or not request.started:
            raise LocalProtocolError(f"request {event.request_id} is not active")
        if isinstance(event, OutputData):
            stream = event.stream
            if stream != FCGI_STDOUT:
                if stream != FCGI_STDERR:
                    raise LocalProtocolError(f"cannot send {stream.name} as output")
                if event.data:
                    request.stderr_used = True
            return build_stream_records(stream, event.request_id, event.data)
        return self._end_request(event, request)

    def _end_request(self, event: EndRequest, request: ActiveRequest) -> bytes:
        return self._end(event.request_id, request, event.app_status, event.protocol_status)

    def end_response(self, request_id: int, last_stdout: bytes, app_status: int = 0) -> bytes:
        """The last STDOUT bytes and the end of the request (§5.5, REQUEST_COMPLETE), as one
        buffer: ``send(OutputData(...)) + send(EndRequest(...))`` without the two events, for
        the end of every response."""
        request = self._requests.get(request_id)
        if request is None or not request.started:
            raise LocalProtocolError(f"request {request_id} is not active")
        end = self._end(request_id, request, app_status, _REQUEST_COMPLETE)
        if last_stdout:
            return build_stream_records(FCGI_STDOUT, request_id, last_stdout) + end
        return end

    def _end(self, request_id: int, request: ActiveRequest, app_status: int, status: int) -> bytes:
        # §6.1: STDOUT gets at least its empty record; STDERR one only if it was used.
        data = build_end_of_response(
            request_id, app_status, status, stderr_used=request.stderr_used
        )
        # §3.3: the id becomes inactive when END_REQUEST is sent; §5.1: without KEEP_CONN the
        # application closes the connection after this response.
        del self._requests[request_id]
        self._close_when_idle |= not request.keep_connection
        return data
