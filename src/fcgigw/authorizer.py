"""Write a FastCGI Authorizer (§6.3) as one function, served as a WSGI or an ASGI app.

``check(request) -> Allow | Deny``: Allow answers 200 with a ``Variable-NAME: value`` header per
variable, which the web server passes to the responder as param NAME; Deny answers with its
status, headers and body, which the web server sends to the client (lighttpd and Apache's
AuthnzFcgiCheckAuthnProvider pass them on; mod_fcgid and the mod_authnz_fcgi Basic provider
replace them with Apache's own 401, web-servers.md §4).

    from fcgigw.authorizer import Allow, Deny, wsgi_authorizer

    def check(request):
        if request.header("X-Api-Token") == "s3cret":
            return Allow({"API_USER": "robot"})
        return Deny.unauthorized()

    application = wsgi_authorizer(check)
"""

from __future__ import annotations

import base64
import binascii
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .adapters.asgi import ASGIApp, Receive, Scope, Send
from .adapters.wsgi import StartResponse, WSGIApp

__all__ = ["Allow", "AuthRequest", "Deny", "asgi_authorizer", "wsgi_authorizer"]


@dataclass(frozen=True)
class Allow:
    """Grant access; ``variables`` reach the responder as params (§6.3 ``Variable-``)."""

    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deny:
    """Refuse access with this response (what the client sees, where the server allows)."""

    status: int = 403
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b"Forbidden\n"

    @classmethod
    def unauthorized(cls, realm: str = "fcgigw", body: bytes = b"Unauthorized\n") -> Deny:
        """401 asking for HTTP Basic credentials."""
        return cls(401, [("WWW-Authenticate", f'Basic realm="{realm}"')], body)


Decision = Allow | Deny


@dataclass(frozen=True)
class AuthRequest:
    """What the web server tells an authorizer: the CGI params as str (latin-1, as sent)."""

    params: Mapping[str, str]

    @property
    def role(self) -> str:
        """AUTHORIZER, or RESPONDER when the app is mounted as an ordinary responder."""
        return self.params.get("FCGI_ROLE", "AUTHORIZER")

    @property
    def apache_role(self) -> str | None:
        """Apache's phase: AUTHENTICATOR, AUTHORIZER or ACCESS_CHECKER (FCGI_APACHE_ROLE)."""
        return self.params.get("FCGI_APACHE_ROLE")

    @property
    def method(self) -> str:
        return self.params.get("REQUEST_METHOD", "GET")

    @property
    def uri(self) -> str:
        """The request target as the client sent it (path and query, still encoded)."""
        return self.params.get("REQUEST_URI", "")

    @property
    def remote_addr(self) -> str:
        return self.params.get("REMOTE_ADDR", "")

    def header(self, name: str) -> str | None:
        """A request header by its HTTP name (``X-Api-Token``), or None."""
        return self.params.get("HTTP_" + name.upper().replace("-", "_"))

    def credentials(self) -> tuple[str, str] | None:
        """(user, password): Apache's REMOTE_USER/REMOTE_PASSWD for an authenticator, else
        the Basic Authorization header (lighttpd sends it; Apache only with CGIPassAuth)."""
        if "REMOTE_PASSWD" in self.params:
            return self.params.get("REMOTE_USER", ""), self.params["REMOTE_PASSWD"]
        scheme, _, encoded = (self.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        return (user, password) if colon else None


def _response(decision: Decision) -> tuple[int, list[tuple[str, str]], bytes]:
    if isinstance(decision, Allow):
        # The response writer refuses names and values that would break the header block.
        headers = [("Variable-" + name, value) for name, value in decision.variables.items()]
        return 200, [*headers, ("Content-Length", "0")], b""
    headers = list(decision.headers)
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(decision.body))))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "text/plain; charset=utf-8"))
    return decision.status, headers, decision.body


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def wsgi_authorizer(check: Callable[[AuthRequest], Decision]) -> WSGIApp:
    """A WSGI app that answers as an Authorizer with ``check``'s decision."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        params = {k: v for k, v in environ.items() if isinstance(v, str)}
        status, headers, body = _response(check(AuthRequest(params)))
        start_response(_status_line(status), headers)
        return [body]

    return application


def asgi_authorizer(
    check: Callable[[AuthRequest], Decision | Awaitable[Decision]],
) -> ASGIApp:
    """An ASGI app that answers as an Authorizer with ``check``'s decision (sync or async)."""

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"an authorizer serves http only, not {scope['type']}")
        fastcgi = scope["extensions"]["fastcgi"]
        params = {n.decode("latin-1"): v.decode("latin-1") for n, v in fastcgi["params"]}
        params["FCGI_ROLE"] = fastcgi["role"]
        decision = check(AuthRequest(params))
        if inspect.isawaitable(decision):
            decision = await decision
        status, headers, body = _response(decision)
        # Case kept: the web server turns Variable-NAME into param NAME as written.
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return application
