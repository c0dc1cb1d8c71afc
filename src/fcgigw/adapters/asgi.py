"""Run an ASGI 3 application for one FastCGI request (ASGI HTTP spec 2.x).

The scope comes from the one params translator; the response goes through the same
ResponseWriter as WSGI. The channel is asynchronous for input, drain and disconnect, and
synchronous for writes, which the transport buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, Final, Protocol

from ..protocol import Role
from .channel import ClientDisconnected, Params, RequestChannel
from .params import (
    SCOPE_PARAMS,
    ScopeParams,
    address_pair,
    asgi_params,
    asgi_path,
    http_version,
    is_mount_point,
    raw_path,
    server_pair,
    split_script_path,
    url_scheme,
)
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
from .streams import RequestBodyTooLarge

logger = logging.getLogger("fcgigw.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASGI_VERSION: Final = {"version": "3.0", "spec_version": "2.4"}
#: Bytes read from a file per record batch for http.response.pathsend.
PATHSEND_CHUNK_BYTES: Final = 256 * 1024


class AsyncRequestChannel(RequestChannel, Protocol):
    """A RequestChannel that also waits: for body bytes, for the socket to drain, for the end."""

    async def receive_input(self) -> tuple[bytes, bool]:
        """The next STDIN bytes and whether more follow (False at STDIN's empty record)."""

    async def receive_data(self) -> tuple[bytes, bool]:
        """The next FCGI_DATA bytes (Filter role, §6.4) and whether more follow."""

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its high-water mark (backpressure)."""

    async def wait_disconnected(self) -> None:
        """Wait until the web server leaves, aborts the request, or the response is done."""

    #: The app's coroutine for this request, set when it is called: the slow log follows it
    #: down to where the app waits (the compiled build's own coroutines have no frames).
    app_call: Awaitable[None] | None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


#: The scope's pieces that follow from a few params, by those params' raw values: the same
#: values come with request after request, and the translator's functions cost microseconds
#: between them. Bounded (the values are partly the client's choice): emptied when full, and
#: long values are never kept.
_CACHE_ENTRIES: Final = 1024
_CACHED_VALUE_BYTES: Final = 1024
_Paths = tuple[str, bytes | None, str]  # path, raw_path, root_path
_Server = tuple[str, str, tuple[str, int] | None]  # http_version, scheme, server
_ROLE_NAMES: Final = {role: role.name for role in Role}
#: Places in the ScopeParams list (params.SCOPE_PARAMS): the first _SERVER_PARAMS say
#: which virtual host.
_SERVER_PARAMS: Final = 6
_METHOD_AT: Final = SCOPE_PARAMS.index(b"REQUEST_METHOD")
_URI_AT: Final = SCOPE_PARAMS.index(b"REQUEST_URI")
_PATH_INFO_AT: Final = SCOPE_PARAMS.index(b"PATH_INFO")
_SCRIPT_NAME_AT: Final = SCOPE_PARAMS.index(b"SCRIPT_NAME")
_QUERY_AT: Final = SCOPE_PARAMS.index(b"QUERY_STRING")
_REMOTE_ADDR_AT: Final = SCOPE_PARAMS.index(b"REMOTE_ADDR")
_REMOTE_PORT_AT: Final = SCOPE_PARAMS.index(b"REMOTE_PORT")
_DOCUMENT_URI_AT: Final = SCOPE_PARAMS.index(b"DOCUMENT_URI")
_FILTER: Final = Role.FILTER


_paths_cache: Final[RecentValues[_Paths]] = RecentValues(_CACHE_ENTRIES)
_server_cache: Final[RecentValues[_Server]] = RecentValues(_CACHE_ENTRIES)
_methods: Final[RecentValues[str]] = RecentValues(_CACHE_ENTRIES)


def _paths(
    script_name: bytes | None,
    path_info: bytes | None,
    request_uri: bytes | None,
    root: str,
    mount_point: bool,
) -> _Paths:
    """path, raw_path and root_path (``request_uri`` without its query, see build_scope)."""
    key = (script_name, path_info, request_uri, root, mount_point)
    paths = _paths_cache.get(key)
    if paths is None:
        script, info = split_script_path(
            _text(script_name), _text(path_info), root, mount_point=mount_point
        )
        # ASGI 2.x: path includes root_path (Starlette and Django strip it themselves).
        full_path = script + info
        paths = (asgi_path(full_path), raw_path(_text(request_uri), full_path), asgi_path(script))
        if len(full_path) + len(request_uri or b"") <= _CACHED_VALUE_BYTES:
            _paths_cache.put(key, paths)
    return paths


def _server(scope_params: ScopeParams) -> _Server:
    """http_version, scheme and server: the same for every request of a virtual host."""
    key = tuple(scope_params[:_SERVER_PARAMS])
    server = _server_cache.get(key)
    if server is None:
        protocol, https, scheme, address, name, port = map(_text, key)
        server = (
            http_version(protocol),
            url_scheme(https, scheme),
            server_pair(address, name, port),
        )
        if sum(len(value) for value in key if value) <= _CACHED_VALUE_BYTES:
            _server_cache.put(key, server)
    return server


def _is_mount_point(params: Params) -> bool:
    """params.is_mount_point, over all the params (it reads some the scope does not)."""
    by_name = dict(params)  # the last of a repeat, as everywhere
    return is_mount_point(lambda name: _text(by_name.get(name.encode())))


def build_scope(
    channel: RequestChannel, root_path: str, state: dict[str, Any] | None = None
) -> Scope:
    """The HTTP connection scope for this request."""
    params = channel.params
    raw, headers = asgi_params(params)
    method = raw[_METHOD_AT] or b"GET"
    method_text = _methods.get(method)
    if method_text is None:
        method_text = method.decode("latin-1").upper()
        if len(method) <= 32:
            _methods.put(method, method_text)
    request_uri = raw[_URI_AT]
    if request_uri and raw[_QUERY_AT]:
        # raw_path looks at the part before "?": the query need not make a cache entry.
        # (With no query, there is at most a "?" at the end: no search for it.)
        query_at = request_uri.find(b"?")
        if query_at >= 0:
            request_uri = request_uri[: query_at + 1]
    path_info = raw[_PATH_INFO_AT]
    # nginx sends DOCUMENT_URI, which rules a mount point out.
    mount_point = path_info is None and raw[_DOCUMENT_URI_AT] is None and _is_mount_point(params)
    path, raw_path_bytes, script_path = _paths(
        raw[_SCRIPT_NAME_AT], path_info, request_uri, root_path, mount_point
    )
    version, scheme, server = _server(raw)
    scope: Scope = {
        "type": "http",
        "asgi": ASGI_VERSION.copy(),
        "http_version": version,
        "method": method_text,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path_bytes,
        "query_string": raw[_QUERY_AT] or b"",
        "root_path": script_path,
        "headers": headers,
        "client": address_pair(_text(raw[_REMOTE_ADDR_AT]), _text(raw[_REMOTE_PORT_AT])),
        "server": server,
        "extensions": {
            "fastcgi": {"params": params, "role": _ROLE_NAMES[channel.role]},
            "http.response.pathsend": {},
        },
    }
    if state is not None:
        scope["state"] = dict(state)  # a shallow copy per request (lifespan spec)
    return scope


class _Cycle:
    """One request/response cycle: the receive and send callables the app gets."""

    __slots__ = ("body_done", "body_left", "channel", "response_done", "writer")

    def __init__(
        self, channel: AsyncRequestChannel, writer: ResponseWriter, max_body_bytes: int = 0
    ) -> None:
        self.channel = channel
        self.writer = writer
        self.body_done = False
        self.response_done = False
        self.body_left = max_body_bytes or -1  # bytes still allowed; -1: no limit

    async def receive(self) -> Message:
        if not self.body_done and not self.response_done and not self.channel.aborted:
            body, more = await self.channel.receive_input()
            self.body_done = not more
            if self.body_left >= 0:
                self.body_left -= len(body)
                if self.body_left < 0:
                    self.body_done = True
                    raise RequestBodyTooLarge("the request body is over max_request_body_bytes")
            if body or not self.channel.aborted:
                return {"type": "http.request", "body": body, "more_body": more}
        await self.channel.wait_disconnected()
        return {"type": "http.disconnect"}

    async def receive_data(self) -> Message:
        """The Filter role's file (§6.4), as ``scope["extensions"]["fastcgi"]["receive_data"]``
        returns it: {"type": "fastcgi.data", "body": bytes, "more_body": bool}; or, as
        receive() does, {"type": "http.disconnect"} once the request is aborted or its
        connection lost before the file's end: not an end the app would take for the file's."""
        body, more = await self.channel.receive_data()
        if not body and not more and self.channel.aborted:
            return {"type": "http.disconnect"}
        return {"type": "fastcgi.data", "body": body, "more_body": more}

    async def send(self, message: Message) -> None:
        # A dict, as apps send (typed so: the compiled build reads it directly, not through
        # the mapping protocol); another mapping is copied.
        fields: dict[str, Any] = message if type(message) is dict else dict(message)
        kind = fields.get("type")
        if self.response_done:
            raise InvalidResponse(f"{kind} sent after the response ended")
        if self.channel.aborted:
            raise ClientDisconnected("the web server went away")
        # Plain methods, not coroutines, for start and body: every response sends them, and
        # only a body with more to come may have to wait (for the transport to drain).
        if kind == "http.response.start":
            self._start(fields)
        elif kind == "http.response.body":
            if self._body(fields.get("body", b""), fields.get("more_body", False)):
                await self.channel.drain()
        elif kind == "http.response.pathsend":
            await self._pathsend(fields["path"])
        else:
            raise InvalidResponse(f"unexpected ASGI message {kind!r}")

    def _start(self, message: dict[str, Any]) -> None:
        if self.writer.started:
            raise InvalidResponse("http.response.start sent twice")
        status = int(message["status"])
        raw_headers = tuple(message.get("headers", ()))
        key = (status, _as_tuples(raw_headers))
        prepared = _starts.get(key)
        if prepared is None:
            # bytes as they are; a bytearray or the like copied (bytes() is a call per item).
            headers = [
                (
                    name if type(name) is bytes else bytes(name),
                    value if type(value) is bytes else bytes(value),
                )
                for name, value in raw_headers
            ]
            prepared = prepare_start(_STATUS_LINES.get(status) or _status_line(status), headers)
            _starts.put(key, prepared)
        self.writer.start_prepared(prepared)

    def _body(self, body: bytes, more: bool) -> bool:
        """Write the body bytes (the last ones with END_REQUEST); True if more will come."""
        writer = self.writer
        if not writer.started:
            raise InvalidResponse("http.response.body sent before http.response.start")
        if not isinstance(body, bytes):
            raise InvalidResponse(f"body must be bytes, not {type(body).__name__}")
        if more:
            writer.write(body)
            return True
        self.response_done = True
        writer.finish(0, body)
        return False

    async def _pathsend(self, path: str) -> None:
        """http.response.pathsend: the file goes out in large reads, drained as it goes."""
        if not self.writer.started:
            raise InvalidResponse("http.response.pathsend sent before http.response.start")
        with open(path, "rb") as file:
            while chunk := file.read(PATHSEND_CHUNK_BYTES):
                self.writer.write(chunk)
                await self.channel.drain()
        self.response_done = True
        self.writer.finish(0)


#: The starts of earlier responses, by status and headers as the app sent them.
_starts: Final[RecentValues[PreparedStart]] = RecentValues(PREPARED_STARTS_MAX)


def _as_tuples(headers: tuple[Any, ...]) -> tuple[Any, ...]:
    """``headers`` with each pair a tuple: the spec's own examples send lists, which cannot
    be a key (a failed lookup costs twice what checking the start again does)."""
    for header in headers:
        if type(header) is not tuple:
            return tuple([pair if type(pair) is tuple else tuple(pair) for pair in headers])
    return headers


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"{status} {reason}".rstrip().encode("latin-1")


#: Status lines by code, made once: an HTTPStatus lookup per response costs a microsecond.
_STATUS_LINES: Final = {int(status): _status_line(status) for status in HTTPStatus}


def _declared_body_too_large(channel: RequestChannel, limit_bytes: int) -> bool:
    declared = dict(channel.params).get(b"CONTENT_LENGTH", b"").decode("latin-1")
    return body_too_large(declared, limit_bytes, channel.request_id)


async def run_asgi(
    app: ASGIApp,
    channel: AsyncRequestChannel,
    *,
    root_path: str = "",
    state: dict[str, Any] | None = None,
    max_body_bytes: int = 0,
) -> None:
    """Call ``app`` for the request on ``channel`` and end the request, whatever happens;
    ``max_body_bytes`` (0: none) refuses bigger bodies with 413."""
    try:
        scope = build_scope(channel, root_path, state)
    except Exception as error:
        bad_params(channel, error)
        return
    writer = ResponseWriter(channel, head_request=scope["method"] == "HEAD")
    if max_body_bytes and _declared_body_too_large(channel, max_body_bytes):
        send_error(channel, 413, BODY_TOO_LARGE, headers_sent=False)
        return
    cycle = _Cycle(channel, writer, max_body_bytes)
    if channel.role is _FILTER:
        scope["extensions"]["fastcgi"]["receive_data"] = cycle.receive_data
    try:
        app_call = channel.app_call = app(scope, cycle.receive, cycle.send)
        await app_call
    except ClientDisconnected:
        _client_left(channel)
    except RequestBodyTooLarge:
        logger.warning("request %d: body over max_request_body_bytes", channel.request_id)
        send_error(channel, 413, BODY_TOO_LARGE, headers_sent=writer.headers_sent)
    except Exception as error:
        _app_failed(cycle, error)
    else:
        if not cycle.response_done:
            _app_returned_early(cycle)


def _app_failed(cycle: _Cycle, error: Exception) -> None:
    channel = cycle.channel
    if cycle.response_done:
        logger.error("request %d: error after the response", channel.request_id, exc_info=error)
    elif channel.aborted and _raised_for_disconnect(error):
        _client_left(channel)
    else:
        fail_request(channel, cycle.writer, error)


def _app_returned_early(cycle: _Cycle) -> None:
    """End a response the app returned without finishing, so the web server is not left
    waiting. When the client has gone (the app saw http.disconnect), that is the client's
    doing, logged as WSGI logs a cut iteration; while it is there, the app's fault."""
    channel, writer = cycle.channel, cycle.writer
    if channel.aborted:
        if writer.started:
            _client_left(channel)
        else:
            channel.finish(APP_STATUS_ERROR)
    elif writer.started:
        logger.error("request %d: the application did not finish its response", channel.request_id)
        writer.finish(APP_STATUS_ERROR)
    else:
        fail_request(channel, writer, InvalidResponse("the application sent no response"))


def _client_left(channel: RequestChannel) -> None:
    """The web server went away mid-response (EOF, RST, ABORT_REQUEST): cut the request."""
    logger.info("request %d: the web server went away mid-response", channel.request_id)
    channel.finish(APP_STATUS_ERROR)


def _raised_for_disconnect(error: BaseException) -> bool:
    """True when ``error`` is the app's reaction to send() raising ClientDisconnected (ASGI
    2.4: an OSError on a closed connection); Starlette's StreamingResponse raises its own
    ClientDisconnect from it. Any other error stays the app's."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain the app built could loop
        if seen is None:
            return False
        if isinstance(seen, ClientDisconnected):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
