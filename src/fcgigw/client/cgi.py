"""CGI on the web-server side: build PARAMS like nginx does, parse the CGI response."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

from ..digits import is_ascii_digits

Params = list[tuple[bytes, bytes]]


def build_params(
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body_length: int | None = None,
    content_type: str | None = None,
    script_name: str | None = None,
    path_info: str | None = None,
    server_name: str = "localhost",
    server_port: int = 80,
    remote_addr: str = "127.0.0.1",
    remote_port: int = 40000,
    https: bool = False,
    extra: Iterable[tuple[str, str]] = (),
) -> Params:
    """PARAMS for an HTTP request, in the shape of nginx's stock fastcgi_params: by default
    the whole decoded path in SCRIPT_NAME and no PATH_INFO (web-servers.md §1)."""
    target, _, query = path.partition("?")
    decoded = unquote_to_bytes(target)
    pairs: list[tuple[str | bytes, str | bytes]] = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method.upper()),
        ("CONTENT_TYPE", content_type or ""),
        ("CONTENT_LENGTH", "" if body_length is None else str(body_length)),
        ("SCRIPT_NAME", decoded if script_name is None else script_name),
        ("REQUEST_URI", path),
        ("DOCUMENT_URI", decoded),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "https" if https else "http"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "fcgigw-client"),
        ("REMOTE_ADDR", remote_addr),
        ("REMOTE_PORT", str(remote_port)),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PORT", str(server_port)),
        ("SERVER_NAME", server_name),
    ]
    if path_info is not None:
        pairs.append(("PATH_INFO", path_info))
    if https:
        pairs.append(("HTTPS", "on"))
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        pairs.append(("HTTP_" + name.upper().replace("-", "_"), value))
    pairs.extend(extra)
    return [(_bytes(name), _bytes(value)) for name, value in pairs]


def _bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


@dataclass
class FastCGIResponse:
    """A finished request: the raw streams, END_REQUEST's statuses and the parsed response."""

    stdout: bytes
    stderr: bytes
    app_status: int
    protocol_status: int
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (any case)."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), default)


def parse_cgi_response(stdout: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """Split a CGI response into status, reason, headers and body. Bare LF line ends are
    accepted (every server does, web-servers.md §3); no Status means 200."""
    head, body = _split_head(stdout)
    status, reason = 200, "OK"
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            continue
        if name.strip().lower() == "status":
            code, _, reason = value.strip().partition(" ")
            status = int(code) if is_ascii_digits(code) else 0
            reason = reason or _phrase(status)
        else:
            headers.append((name.strip(), value.strip()))
    return status, reason, headers, body


def _split_head(stdout: bytes) -> tuple[bytes, bytes]:
    ends = [(stdout.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(index, sep) for index, sep in ends if index >= 0]
    if not found:
        return stdout, b""
    index, sep = min(found)
    return stdout[:index], stdout[index + len(sep) :]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
