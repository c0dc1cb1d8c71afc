"""fcgigw.authorizer: one check function served as WSGI and ASGI Authorizer apps (§6.3)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from fcgigw.authorizer import Allow, AuthRequest, Deny, asgi_authorizer, wsgi_authorizer


def token_check(request: AuthRequest) -> Allow | Deny:
    if request.header("X-Api-Token") == "t0ken":
        return Allow({"API_CLIENT": "robot", "AUTH_METHOD": "token"})
    return Deny(403, [("Content-Type", "application/json")], b'{"error": "bad token"}')


async def async_token_check(request: AuthRequest) -> Allow | Deny:
    await asyncio.sleep(0)
    return token_check(request)


def call_wsgi(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.update(status=status, headers=headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def call_asgi(app: Any, params: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "extensions": {"fastcgi": {"params": tuple(params), "role": "AUTHORIZER"}},
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_wsgi_allow_sends_variable_headers_and_no_body() -> None:
    status, headers, body = call_wsgi(
        wsgi_authorizer(token_check), {"HTTP_X_API_TOKEN": "t0ken", "FCGI_ROLE": "AUTHORIZER"}
    )
    assert status == "200 OK"
    assert ("Variable-API_CLIENT", "robot") in headers
    assert ("Variable-AUTH_METHOD", "token") in headers
    assert body == b""


def test_wsgi_deny_keeps_the_apps_response() -> None:
    status, headers, body = call_wsgi(wsgi_authorizer(token_check), {"HTTP_X_API_TOKEN": "no"})
    assert status == "403 Forbidden"
    assert ("Content-Type", "application/json") in headers
    assert ("Content-Length", str(len(body))) in headers
    assert body == b'{"error": "bad token"}'


@pytest.mark.parametrize("check", [token_check, async_token_check])
def test_asgi_authorizer_with_sync_and_async_checks(check: Any) -> None:
    start, body = call_asgi(asgi_authorizer(check), [(b"HTTP_X_API_TOKEN", b"t0ken")])
    assert start["status"] == 200
    # The case is kept: the web server turns Variable-API_CLIENT into param API_CLIENT.
    assert (b"Variable-API_CLIENT", b"robot") in start["headers"]
    assert body == {"type": "http.response.body", "body": b""}


def test_asgi_authorizer_refuses_lifespan() -> None:
    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: dict[str, Any]) -> None:
        return None

    with pytest.raises(RuntimeError, match="http only"):
        asyncio.run(asgi_authorizer(token_check)({"type": "lifespan"}, nothing, ignore))


def test_unauthorized_asks_for_basic_credentials() -> None:
    deny = Deny.unauthorized("staff")
    assert deny.status == 401
    assert ("WWW-Authenticate", 'Basic realm="staff"') in deny.headers


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"al:ice:pw").decode()},
            ("al", "ice:pw"),
        ),
        (
            {"HTTP_AUTHORIZATION": "basic " + base64.b64encode("zoë:pw".encode()).decode()},
            ("zoë", "pw"),
        ),
        (
            {"REMOTE_USER": "alice", "REMOTE_PASSWD": "s", "HTTP_AUTHORIZATION": "Bearer x"},
            ("alice", "s"),
        ),
        ({"HTTP_AUTHORIZATION": "Bearer x"}, None),
        ({"HTTP_AUTHORIZATION": "Basic ???"}, None),
        ({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"\xff:x").decode()}, None),
        ({"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"nocolon").decode()}, None),
        ({}, None),
    ],
)
def test_credentials(params: dict[str, str], expected: tuple[str, str] | None) -> None:
    assert AuthRequest(params).credentials() == expected


def test_request_details() -> None:
    request = AuthRequest(
        {
            "FCGI_APACHE_ROLE": "AUTHORIZER",
            "REQUEST_METHOD": "DELETE",
            "REQUEST_URI": "/a%20b?x=1",
            "REMOTE_ADDR": "::1",
            "AUTHZ_USER": "alice",
        }
    )
    assert (request.apache_role, request.role) == ("AUTHORIZER", "AUTHORIZER")
    assert (request.method, request.uri, request.remote_addr) == ("DELETE", "/a%20b?x=1", "::1")
    assert request.params["AUTHZ_USER"] == "alice"  # an earlier phase's variable (Apache)
    assert request.header("X-Missing") is None
