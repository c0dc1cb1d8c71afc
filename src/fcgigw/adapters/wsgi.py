"""Run a PEP 3333 application for one FastCGI request.

The environ comes from the one params translator; the response goes through the shared
ResponseWriter. An application error becomes a 500 (no traceback in the body) with the
traceback logged and sent on FCGI_STDERR; the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Final

from ..protocol import Role
from .channel import ClientDisconnected, RequestChannel
from .params import wsgi_environ
from .recent import RecentValues
from .response import (
    APP_STATUS_ERROR,
    BODY_TOO_LARGE,
    PREPARED_STARTS_MAX,
    InvalidResponse,
    PreparedStart,
    ResponseWriter,
    bad_params,
    body_too_large,
    fail_request,
    prepare_start,
    send_error,
)
from .streams import ErrorStream, FileWrapper, InputStream, RequestBodyTooLarge

logger = logging.getLogger("fcgigw.wsgi")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


#: The environ entries that are the same for every request.
_WSGI_CONSTANTS: Final[dict[str, Any]] = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": True,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
    "wsgi.file_wrapper": FileWrapper,
}
_ROLE_NAMES: Final = {role: role.name for role in Role}


def build_environ(channel: RequestChannel, root_path: str) -> dict[str, Any]:
    """The full PEP 3333 environ for this request."""
    environ = wsgi_environ(channel.params, root_path, _WSGI_CONSTANTS)
    environ["wsgi.input"] = InputStream(channel.read_input)
    environ["wsgi.errors"] = ErrorStream(channel)
    environ["fcgi.params"] = channel.params
    environ["FCGI_ROLE"] = _ROLE_NAMES[channel.role]
    if channel.role is Role.FILTER:
        # §6.4: the file to filter, after STDIN; FCGI_DATA_LENGTH and FCGI_DATA_LAST_MOD are
        # in the environ with the other params.
        environ["fcgi.data"] = InputStream(channel.read_data)
    return environ


class _StartResponse:
    """start_response for one request (PEP 3333 rules on exc_info and repeated calls)."""

    __slots__ = ("_writer",)

    def __init__(self, writer: ResponseWriter) -> None:
        self._writer = writer

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self._writer.headers_sent:
                    # PEP 3333: too late to change the response; re-raise the app's error.
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._writer.started:
            raise InvalidResponse("start_response called twice without exc_info")
        header_pairs = tuple(headers)
        key = (status, header_pairs)
        prepared = _starts.get(key)
        if prepared is None:
            prepared = _prepare(status, header_pairs)
            _starts.put(key, prepared)
        self._writer.start_prepared(prepared)
        return self._writer.write


#: The starts of earlier responses, by status and headers as str (literals: hashes kept).
_starts: Final[RecentValues[PreparedStart]] = RecentValues(PREPARED_STARTS_MAX)


def _prepare(status: str, headers: tuple[tuple[str, str], ...]) -> PreparedStart:
    """Check and encode a start_response's status and headers (PEP 3333: latin-1 str)."""
    try:
        encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        if type(status) is not str:
            raise TypeError
    except (AttributeError, TypeError, UnicodeEncodeError, ValueError):
        # Not str, not latin-1, or not pairs: say exactly what (the slow way).
        encoded = [(_latin1(n), _latin1(v)) for n, v in headers]
        _latin1(status)
    return prepare_start(status.encode("latin-1"), encoded)


def _latin1(text: str) -> bytes:
    if type(text) is not str:
        raise InvalidResponse(f"status and headers must be str, got {type(text).__name__}")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidResponse(f"{text!r} is not latin-1 (PEP 3333)") from None


def run_wsgi(
    app: WSGIApp,
    channel: RequestChannel,
    *,
    root_path: str = "",
    run_once: bool = False,
    max_body_bytes: int = 0,
) -> None:
    """Call ``app`` for the request on ``channel`` and end the request, whatever happens.
    ``run_once`` is PEP 3333's hint that the process serves this one request (CGI);
    ``max_body_bytes`` (0: none) refuses bigger bodies with 413."""
    try:
        environ = build_environ(channel, root_path)
    except Exception as error:
        bad_params(channel, error)
        return
    environ["wsgi.run_once"] = run_once
    writer = ResponseWriter(channel, head_request=environ.get("REQUEST_METHOD") == "HEAD")
    if max_body_bytes:
        if body_too_large(environ.get("CONTENT_LENGTH"), max_body_bytes, channel.request_id):
            send_error(channel, 413, BODY_TOO_LARGE, headers_sent=False)
            return
        environ["wsgi.input"] = InputStream(channel.read_input, max_body_bytes)
    try:
        last_chunk = _respond(app, environ, writer, channel)
        if not writer.started:
            raise InvalidResponse("the application returned without calling start_response")
    except ClientDisconnected:
        logger.info("request %d: the web server went away", channel.request_id)
        channel.finish(APP_STATUS_ERROR)
    except RequestBodyTooLarge:
        logger.warning("request %d: body over max_request_body_bytes", channel.request_id)
        send_error(channel, 413, BODY_TOO_LARGE, headers_sent=writer.headers_sent)
    except Exception as error:
        fail_request(channel, writer, error)
    else:
        writer.finish(0, last_chunk)


def _respond(
    app: WSGIApp, environ: dict[str, Any], writer: ResponseWriter, channel: RequestChannel
) -> bytes:
    """Run the app, stream its body, and return the chunk to send with END_REQUEST."""
    result = app(environ, _StartResponse(writer))
    try:
        if isinstance(result, (list, tuple)) and len(result) <= 1:
            # The common case: at most one chunk, which goes out with the headers and
            # END_REQUEST in a single write.
            return _checked(result[0]) if result else b""
        for chunk in result:
            if _checked(chunk):
                writer.write(chunk)
            if channel.aborted:
                raise ClientDisconnected
        return b""
    finally:
        # PEP 3333: close() is called however the iteration ended. A list has none (and a
        # failed attribute lookup costs an exception).
        if type(result) is not list:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _checked(chunk: object) -> bytes:
    if type(chunk) is not bytes:
        raise InvalidResponse(f"response body items must be bytes, not {type(chunk).__name__}")
    return chunk
