"""A WSGI app that forwards each request over FastCGI, so ``webtest.TestApp`` (or any WSGI
test tool) can drive a running fcgigw through the real wire."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from ..address import Address
from ..digits import is_ascii_digits
from .connection import FastCGIClient

#: CGI variables copied from the proxy's environ into the forwarded PARAMS.
_CGI_NAMES = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
)


class FastCGIProxy:
    """Forward WSGI requests to the FastCGI application at ``address``."""

    def __init__(self, address: Address | str, *, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        params = self.params(environ)
        length = environ.get("CONTENT_LENGTH") or ""
        body = environ["wsgi.input"].read(int(length)) if is_ascii_digits(length) else b""
        with FastCGIClient(self.address, timeout=self.timeout) as client:
            response = client.request(params, body)
        if response.stderr:
            environ["wsgi.errors"].write(response.stderr.decode("utf-8", "replace"))
        start_response(f"{response.status} {response.reason}", response.headers)
        return [response.body]

    @staticmethod
    def params(environ: dict[str, Any]) -> list[tuple[bytes, bytes]]:
        """The CGI variables and HTTP_* headers of ``environ`` as FastCGI PARAMS."""
        pairs = [(name, str(environ[name])) for name in _CGI_NAMES if name in environ]
        pairs += [(k, v) for k, v in environ.items() if k.startswith("HTTP_")]
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        # REQUEST_URI is the raw target: percent-encoded, as a web server would pass it.
        uri = quote(path.encode("latin-1"), safe="/;=,@:+$!*'()~")
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        pairs.append(("REQUEST_URI", uri))
        if environ.get("wsgi.url_scheme") == "https":
            pairs.append(("HTTPS", "on"))
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]
