"""The ASGI adapter driven through an in-memory channel, with real Starlette apps and raw ASGI
ones: what a web server would receive, and what fcgigw logs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from memory_channels import BASE_PARAMS, AsyncMemoryChannel

from fcgigw.adapters.asgi import run_asgi


def with_method(method: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((n, method if n == b"REQUEST_METHOD" else v) for n, v in BASE_PARAMS)


def run(app: Any, channel: AsyncMemoryChannel | None = None) -> AsyncMemoryChannel:
    channel = channel or AsyncMemoryChannel()
    asyncio.run(run_asgi(app, channel))
    return channel


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def starlette_app() -> Any:
    applications = pytest.importorskip("starlette.applications")
    responses = pytest.importorskip("starlette.responses")
    routing = pytest.importorskip("starlette.routing")

    async def page(request: Any) -> Any:
        return responses.PlainTextResponse("hello, world")

    return applications.Starlette(routes=[routing.Route("/page", page)])


def test_starlette_head_is_a_complete_response_not_a_short_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Starlette answers HEAD with GET's Content-Length (RFC 9110 §9.3.2)."""
    with caplog.at_level(logging.INFO, logger="fcgigw"):
        channel = run(starlette_app(), AsyncMemoryChannel(with_method(b"HEAD")))
    status, headers, body = channel.response()
    assert (status, headers["content-length"], body) == ("200 OK", "12", b"")
    assert channel.app_status == 0
    assert errors(caplog) == []


def test_starlette_get_sends_the_body() -> None:
    """The control: the same app over GET."""
    channel = run(starlette_app())
    assert channel.response()[2] == b"hello, world"
    assert channel.app_status == 0
