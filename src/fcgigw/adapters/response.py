"""The response writer WSGI and ASGI share: status and header checks, the CGI header block,
Content-Length accounting, HEAD bodies, and when the headers go out.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from http import HTTPStatus
from typing import Final

from ..digits import is_ascii_digits
from .channel import ClientDisconnected, RequestChannel

logger = logging.getLogger("fcgigw.response")

# RFC 9110 §5.6.2 token characters: what a header name may contain.
_TOKEN_CHARS: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_FORBIDDEN_VALUE_BYTES: Final = frozenset(b"\r\n\x00")


#: appStatus (§5.5) when the application failed: what a CGI program's exit status would say.
APP_STATUS_ERROR: Final = 1


class InvalidResponse(ValueError):
    """The application produced a response that cannot be sent safely (a bug in the app)."""


def check_status(status: bytes) -> int:
    """Return the code of a ``b"200 OK"`` status line, refusing anything that could inject."""
    code = status[:3]
    if len(status) < 3 or not code.isdigit() or (len(status) > 3 and status[3:4] != b" "):
        raise InvalidResponse(f"malformed status {status!r}: want '200 OK'")
    if _FORBIDDEN_VALUE_BYTES.intersection(status):
        raise InvalidResponse(f"status {status!r} contains CR, LF or NUL")
    return int(code)


#: Status lines seen before and their codes: an app uses a handful, each on many responses.
_checked_statuses: Final[dict[bytes, int]] = {}
_CHECKED_STATUSES_MAX: Final = 256


def _check_new_status(status: bytes) -> int:
    code = check_status(status)
    if len(_checked_statuses) < _CHECKED_STATUSES_MAX:
        _checked_statuses[status] = code
    return code


#: One C-level scan. Not ``b"\r" in value``: bytes.__contains__ first tries its argument as an
#: int, and the TypeError it formats and drops cost more than the scan (three per header).
_line_break_or_nul: Final = re.compile(rb"[\r\n\x00]").search


#: Header names that passed check_header: an app sends the same few, usually as constants
#: (their hash is kept), so a set lookup replaces the scan. Bounded: names may be dynamic.
_checked_names: Final[set[bytes]] = set()
_CHECKED_NAMES_MAX: Final = 512


def check_header(name: bytes, value: bytes) -> None:
    """Refuse header names that are not tokens and values with CR/LF/NUL (header injection)."""
    if name not in _checked_names:
        # The usual name (letters, digits and dashes) passes the first test, a C-level scan;
        # only others are checked character by character.
        if not name.replace(b"-", b"").isalnum() and (
            not name or not _TOKEN_CHARS.issuperset(name)
        ):
            raise InvalidResponse(f"invalid header name {name!r}")
        if len(_checked_names) < _CHECKED_NAMES_MAX:
            _checked_names.add(name)
    if _line_break_or_nul(value):
        raise InvalidResponse(f"header {name!r} value contains CR, LF or NUL")


def header_block(status: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The CGI response header block. Always with an explicit ``Status:`` line: servers disagree
    on the defaults for a Location-only response (web-servers.md §3, §6.7)."""
    lines = [b"Status: " + status]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


#: What a response start becomes once checked: the status code, the Content-Length it
#: declares (None: none) and the CGI header block.
PreparedStart = tuple[int, "int | None", bytes]


def prepare_start(status: bytes, headers: list[tuple[bytes, bytes]]) -> PreparedStart:
    """Check a status line and headers (InvalidResponse if they could not be sent safely)."""
    code = _checked_statuses.get(status) or _check_new_status(status)
    declared: int | None = None
    for name, value in headers:
        check_header(name, value)
        if len(name) == 14 and name.lower() == b"content-length":
            declared = _parse_length(value)
    return code, declared, header_block(status, headers)


#: Response starts each adapter remembers (response starts repeat; see recent.RecentValues).
PREPARED_STARTS_MAX: Final = 256


class ResponseWriter:
    """Sends one response on a channel; the headers go with the first body bytes (PEP 3333)."""

    __slots__ = (
        "_channel",
        "_declared_length",
        "_head",
        "_pending_headers",
        "_sent_length",
        "headers_sent",
        "status_code",
    )

    def __init__(self, channel: RequestChannel, *, head_request: bool = False) -> None:
        self._channel = channel
        self._head = head_request
        self._pending_headers = b""
        self._declared_length: int | None = None
        self._sent_length = 0
        self.headers_sent = False
        self.status_code = 0

    def start(self, status: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Validate and hold the header block until the first body bytes (or the end)."""
        self.start_prepared(prepare_start(status, headers))

    def start_prepared(self, prepared: PreparedStart) -> None:
        """start() with a start prepare_start() has checked (perhaps for an earlier response)."""
        if self.headers_sent:
            raise InvalidResponse("response headers were already sent")
        self.status_code, self._declared_length, self._pending_headers = prepared

    @property
    def started(self) -> bool:
        """True once start() has been called (the headers may still be held)."""
        return bool(self._pending_headers) or self.headers_sent

    def write(self, data: bytes) -> None:
        """Send body bytes now (with the held headers the first time)."""
        if not self.started:
            raise InvalidResponse("body sent before the response was started")
        if data:
            self._channel.send_stdout(self._take_output(data))

    def finish(self, app_status: int = 0, last_data: bytes = b"") -> None:
        """Send what is left and END_REQUEST, in one write when it fits."""
        output = self._take_output(last_data) if self.started else b""
        if self._short():
            logger.error(
                "request %d: response shorter than its Content-Length (%d of %d bytes)",
                self._channel.request_id,
                self._sent_length,
                self._declared_length,
            )
            app_status = app_status or 1
        self._channel.finish(app_status, output)

    def _short(self) -> bool:
        """True when the body fell short of its Content-Length. A response to HEAD and a 304
        have no body whatever their headers say (RFC 9110 §6.4.1), and their Content-Length
        is the one a GET would get (§8.6, §9.3.2): they are complete without it."""
        declared = self._declared_length
        if declared is None or self._sent_length >= declared:
            return False
        return not self._head and self.status_code != HTTPStatus.NOT_MODIFIED

    def _take_output(self, data: bytes) -> bytes:
        data = self._account(data)
        if self.headers_sent:
            return data
        self.headers_sent = True
        headers, self._pending_headers = self._pending_headers, b""
        return headers + data if data else headers

    def _account(self, data: bytes) -> bytes:
        if self._head:
            # HEAD arrives as HEAD from every server and they strip the body anyway
            # (web-servers.md §3); don't spend the bandwidth. Nothing is counted: _short().
            return b""
        declared = self._declared_length
        if declared is not None and self._sent_length + len(data) > declared:
            logger.error(
                "request %d: response body longer than its Content-Length %d; truncated",
                self._channel.request_id,
                declared,
            )
            data = data[: declared - self._sent_length]
        self._sent_length += len(data)
        return data


def _parse_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise InvalidResponse(f"invalid Content-Length {value!r}")
    return int(value)


def error_response(
    code: int, reason: str, message: str
) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """A small plain-text error response (status line, headers, body) sent by fcgigw itself."""
    body = f"{code} {reason}\n\n{message}\n".encode()
    headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(body)).encode()),
    ]
    return f"{code} {reason}".encode(), headers, body


def fail_request(channel: RequestChannel, writer: ResponseWriter, error: BaseException) -> None:
    """End a request whose application failed: a 500 when the headers are not out yet, else a
    cut response; the traceback is logged and sent to the web server's error log (FCGI_STDERR),
    never to the client. Shared by WSGI and ASGI."""
    logger.error("request %d: application error", channel.request_id, exc_info=error)
    text = "".join(traceback.format_exception(error))
    try:
        channel.send_stderr(text.encode("utf-8", "backslashreplace"))
    except ClientDisconnected:
        pass
    send_error(channel, 500, "The application failed.", headers_sent=writer.headers_sent)


BODY_TOO_LARGE: Final = "The request body is larger than this server accepts."


def body_too_large(content_length: str | None, limit_bytes: int, request_id: int) -> bool:
    """A declared length over the limit (the app is then not called); logged once."""
    if content_length is None or not is_ascii_digits(content_length):
        return False
    if int(content_length) <= limit_bytes:
        return False
    logger.warning(
        "request %d: refused a %s-byte body (setting max_request_body_bytes)",
        request_id,
        content_length,
    )
    return True


def bad_params(channel: RequestChannel, error: Exception) -> None:
    """The params could not be made into an environ or scope: 400, with the reason logged,
    so the web server gets an answer however odd the request (found by fuzzing)."""
    logger.warning("request %d: unusable params (%s): answered 400", channel.request_id, error)
    send_error(channel, 400, "The request could not be read.", headers_sent=False)


def timed_out(
    channel: RequestChannel, seconds: int, consequence: str, *, headers_sent: bool
) -> None:
    """A request ran past request_timeout_seconds: 504 (or the cut response), logged once."""
    logger.error(
        "request %d: still running after %d s: answered 504, %s (setting request_timeout_seconds)",
        channel.request_id,
        seconds,
        consequence,
    )
    send_error(channel, 504, "The application took too long.", headers_sent=headers_sent)


def send_error(channel: RequestChannel, code: int, message: str, *, headers_sent: bool) -> None:
    """End a request with an error response from fcgigw (500, 413, 504), or, when the app's
    headers are already out, by cutting the response (END_REQUEST with an error appStatus)."""
    try:
        if headers_sent:
            channel.finish(APP_STATUS_ERROR)
            return
        status, headers, body = error_response(code, HTTPStatus(code).phrase, message)
        fallback = ResponseWriter(channel)
        fallback.start(status, headers)
        fallback.finish(APP_STATUS_ERROR, body)
    except ClientDisconnected:
        channel.finish(APP_STATUS_ERROR)
