"""The ASGI adapter driven through an in-memory channel, with real Starlette apps and raw ASGI
ones: what a web server would receive, and what fcgigw logs."""

from __future__ import annotations

import asyncio
import logging
from types import MappingProxyType
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


async def wait_for_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def test_an_app_that_returns_on_disconnect_mid_response_is_logged_as_the_client_leaving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The app started a response, got http.disconnect and returned (as uvicorn's apps may):
    the client left; nothing is wrong with the app."""
    channel = AsyncMemoryChannel()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        channel.disconnect()
        await wait_for_disconnect(receive)

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        run(app, channel)
    assert errors(caplog) == []
    assert "request 1: the web server went away mid-response" in caplog.messages
    assert channel.app_status == 1  # the response was cut: not a success


def test_starlette_streaming_cut_by_a_disconnect_is_logged_as_the_client_leaving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ASGI spec 2.4: send() raises an OSError once the client is gone; Starlette's
    StreamingResponse turns it into its own ClientDisconnect and raises that."""
    responses = pytest.importorskip("starlette.responses")
    channel = AsyncMemoryChannel()

    async def numbers() -> Any:
        for number in range(100):
            if number == 2:
                channel.disconnect()
            yield b"%d\n" % number
            await asyncio.sleep(0)

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        run(responses.StreamingResponse(numbers()), channel)
    assert errors(caplog) == []
    assert "request 1: the web server went away mid-response" in caplog.messages
    assert channel.response()[2] == b"0\n1\n"
    assert not channel.stderr  # no traceback for the web server's error log either


def test_an_unfinished_response_is_an_error_while_the_client_is_still_there(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        channel = run(app)
    assert errors(caplog) == ["request 1: the application did not finish its response"]
    assert channel.app_status == 1


def test_an_app_error_after_a_disconnect_is_still_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only the app's reaction to the disconnect is the client's doing, not any error."""
    channel = AsyncMemoryChannel()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        channel.disconnect()
        raise KeyError("a bug of its own")

    with caplog.at_level(logging.INFO, logger="fcgigw"):
        run(app, channel)
    assert errors(caplog) == ["request 1: application error"]


def raw_app(headers: Any, body: bytes = b"hello") -> Any:
    """A raw ASGI app answering with ``headers`` (called for each response: a generator is
    made afresh)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        given = headers() if callable(headers) else headers
        await send({"type": "http.response.start", "status": 200, "headers": given})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        [[b"content-type", b"text/plain"], [b"content-length", b"5"]],  # the spec's examples
        lambda: ((n, v) for n, v in [(b"content-type", b"text/plain"), (b"content-length", b"5")]),
        [(bytearray(b"content-type"), b"text/plain"), (b"content-length", memoryview(b"5"))],
    ],
    ids=["tuples", "lists", "generator", "bytearray-and-memoryview"],
)
def test_every_shape_of_headers_gives_the_same_response_each_time(headers: Any) -> None:
    """Starts are remembered by what the app sent, when it can be: the second response of
    each shape must be the first one again."""
    for _ in range(3):
        channel = run(raw_app(headers))
        assert channel.response() == (
            "200 OK",
            {"content-type": "text/plain", "content-length": "5"},
            b"hello",
        )
        assert channel.app_status == 0


def test_a_remembered_start_is_still_checked_and_declares_its_length() -> None:
    bad = [(b"x-bad", b"a\r\nx-injected: evil")]
    for _ in range(2):
        channel = run(raw_app(bad))
        assert channel.response()[0] == "500 Internal Server Error"
        assert b"x-injected" not in channel.stdout
    good = [(b"content-length", b"10")]
    assert run(raw_app(good, b"0123456789")).app_status == 0
    assert run(raw_app(good, b"short")).app_status == 1  # still declares 10


def test_messages_that_are_other_mappings_than_dicts_are_sent_as_dicts_are() -> None:
    """The spec's messages are dicts; a read-only mapping (a middleware's) works the same."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]}
        await send(MappingProxyType(start))
        await send(MappingProxyType({"type": "http.response.body", "body": b"made"}))

    status, headers, body = run(app).response()
    assert (status, headers["x-a"], body) == ("201 Created", "1", b"made")
