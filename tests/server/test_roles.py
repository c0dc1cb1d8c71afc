"""The Authorizer and Filter roles (§6.3, §6.4) for WSGI and ASGI apps, over the real wire.

The web servers that send them are covered in tests/integration; these drive every case
through fcgigw.client, including what no server sends on demand (a Filter's DATA stream,
Apache's authenticator params, a short data file).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import REPO, RunningProcess, child_environment, run_fcgigw

from fcgigw.client import FastCGIClient, build_params
from fcgigw.protocol import (
    AbortRequest,
    EndRequest,
    InputData,
    OutputData,
    ProtocolStatus,
    RecordType,
    Role,
)

TIMEOUT = 20
CLIENT = [sys.executable, "-m", "fcgigw.client"]
USERS = "alice:secret:admin,bob:hunter2:reader"


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def router(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The test router (WSGI testapps or ASGI asgiapps), all roles enabled (the default)."""
    app = "testapps:router" if request.param == "wsgi" else "asgiapps:router"
    with run_fcgigw(app) as server:
        yield server


@pytest.fixture(scope="module", params=["application", "asgi_application"])
def authorizer(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The Basic-auth example authorizer, as WSGI and as ASGI."""
    env = child_environment()
    env["FCGIGW_EXAMPLE_USERS"] = USERS
    with run_fcgigw(f"examples.authorizer.basic_auth:{request.param}", env=env) as server:
        yield server


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def authorize(server: RunningProcess, **kwargs: object) -> tuple[int, dict[str, str], bytes]:
    """One AUTHORIZER request as mod_fcgid sends it: PARAMS and no STDIN record at all."""
    params = build_params("GET", "/private/report.pdf", **kwargs)  # type: ignore[arg-type]
    with FastCGIClient(server.address, timeout=TIMEOUT) as client:
        response = client.request(params, role=Role.AUTHORIZER)
    assert response.protocol_status == ProtocolStatus.REQUEST_COMPLETE
    return response.status, dict(response.headers), response.body


# -- Authorizer (§6.3) -----------------------------------------------------------------------


def test_authorizer_without_credentials_asks_for_them(authorizer: RunningProcess) -> None:
    status, headers, body = authorize(authorizer)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="fcgigw example"'
    assert body == b"Log in to see this.\n"  # lighttpd shows the client this body


def test_authorizer_grants_with_variables(authorizer: RunningProcess) -> None:
    status, headers, body = authorize(
        authorizer, headers=[("Authorization", basic("alice", "secret"))]
    )
    assert status == 200
    assert headers["Variable-AUTHZ_USER"] == "alice"  # the responder gets AUTHZ_USER=alice
    assert headers["Variable-AUTHZ_ROLE"] == "admin"
    assert body == b""


def test_authorizer_refuses_a_wrong_password(authorizer: RunningProcess) -> None:
    status, headers, _ = authorize(authorizer, headers=[("Authorization", basic("bob", "nope"))])
    assert status == 401
    assert not any(name.startswith("Variable-") for name in headers)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"alice").decode()],
)
def test_authorizer_treats_malformed_credentials_as_missing(
    authorizer: RunningProcess, authorization: str
) -> None:
    status, _, _ = authorize(authorizer, headers=[("Authorization", authorization)])
    assert status == 401


def test_apache_authenticator_and_authorizer_phases(authorizer: RunningProcess) -> None:
    # mod_authnz_fcgi as AuthBasicProvider: the credentials come as REMOTE_USER/REMOTE_PASSWD.
    status, headers, _ = authorize(
        authorizer,
        extra=[
            ("FCGI_APACHE_ROLE", "AUTHENTICATOR"),
            ("REMOTE_USER", "bob"),
            ("REMOTE_PASSWD", "hunter2"),
        ],
    )
    assert (status, headers["Variable-AUTHZ_USER"]) == (200, "bob")
    # The authorization phase: the user is authenticated; only the role is decided.
    status, headers, _ = authorize(
        authorizer, extra=[("FCGI_APACHE_ROLE", "AUTHORIZER"), ("REMOTE_USER", "bob")]
    )
    assert (status, headers["Variable-AUTHZ_ROLE"]) == (200, "reader")
    status, _, _ = authorize(
        authorizer, extra=[("FCGI_APACHE_ROLE", "AUTHORIZER"), ("REMOTE_USER", "mallory")]
    )
    assert status == 403


def test_authorizer_answers_lighttpds_empty_stdin_too(authorizer: RunningProcess) -> None:
    """lighttpd sends the empty STDIN record after PARAMS; it must not confuse the next
    request on the connection (nor delay this one)."""
    params = build_params("GET", "/x", headers=[("Authorization", basic("alice", "secret"))])
    with FastCGIClient(authorizer.address, timeout=TIMEOUT) as client:
        client.begin(params, role=Role.AUTHORIZER, keep_connection=True)
        client.send_stream(1, b"", RecordType.STDIN)
        first = client.read_response(1, keep_connection=True)
        again = client.request(params, role=Role.AUTHORIZER, keep_connection=True)
    assert first.status == again.status == 200


def test_an_app_sees_the_authorizer_role(router: RunningProcess) -> None:
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        response = client.request(build_params("GET", "/echo"), role=Role.AUTHORIZER)
    seen = json.loads(response.body)
    role = seen.get("FCGI_ROLE") or seen.get("role")
    assert role == "AUTHORIZER"
    assert seen.get("body_length") == 0  # no STDIN was sent, and none was waited for


# -- Filter (§6.4) ---------------------------------------------------------------------------


def filter_params(data_length: int) -> list[tuple[str | bytes, str | bytes]]:
    return list(
        build_params(
            "POST",
            "/filter_upper",
            body_length=4,
            extra=[("FCGI_DATA_LENGTH", str(data_length)), ("FCGI_DATA_LAST_MOD", "1700000000")],
        )
    )


def test_filter_reads_stdin_then_the_data_stream(router: RunningProcess) -> None:
    data = b"hello filter\n" * 10000  # 130 kB: several DATA records
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        response = client.request(filter_params(len(data)), b"form", role=Role.FILTER, data=data)
    assert response.status == 200
    assert response.body.startswith(b"stdin 4\n")
    assert data.upper() in response.body
    assert b"\n130000 of 130000 bytes" in response.body
    assert response.body.endswith(b"complete")


def test_filter_sees_a_short_data_stream(router: RunningProcess) -> None:
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        response = client.request(filter_params(100), b"form", role=Role.FILTER, data=b"short")
    assert b"5 of 100 bytes" in response.body
    assert response.body.endswith(b"data missing")


@pytest.mark.parametrize("cut", ["abort-request", "connection-closed"])
def test_a_filter_file_cut_short_is_not_taken_for_its_end(router: RunningProcess, cut: str) -> None:
    """A file that ends short is a file that changed (§6.4: the app compares with
    FCGI_DATA_LENGTH), but one whose request is aborted or whose connection is lost
    mid-file did not end: reading fcgi.data raises, as wsgi.input does, and ASGI's
    receive_data says http.disconnect (it said more_body: False before)."""
    tag = f"{cut}-{router.address[-5:]}"
    params = build_params("POST", f"/data_outcome?{tag}", extra=[("FCGI_DATA_LENGTH", "100000")])
    keep = cut == "abort-request"
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        client.begin(params, role=Role.FILTER, keep_connection=keep)
        client.send_stream(1, b"", RecordType.STDIN)
        client.send_event(InputData(1, b"d" * 30_000, RecordType.DATA))
        if keep:
            client.send_event(AbortRequest(1))
            while not isinstance(client.next_event(), EndRequest):
                pass
            assert client.request(build_params("GET", "/hello")).body == b"Hello, world!"
    router.wait_for_log(f"data {tag}: ")
    assert f"data {tag}: whole" not in router.log()


def test_filter_writes_before_the_data_stream_ends(router: RunningProcess) -> None:
    """§6.4: the app may write once STDIN has ended, before DATA does."""
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        client.begin(filter_params(20), role=Role.FILTER)
        client.send_stream(1, b"form", RecordType.STDIN)
        client.send_event(InputData(1, b"first half", RecordType.DATA))
        output = b""
        while b"FIRST HALF" not in output:  # bounded by the client timeout
            event = client.next_event()
            assert isinstance(event, OutputData), event
            output += event.data if event.stream is RecordType.STDOUT else b""
        client.send_event(InputData(1, b"second one", RecordType.DATA))
        client.send_stream(1, b"", RecordType.DATA)
        rest = client.read_response(1).stdout  # the headers came with the first half
    assert b"\n20 of 20 bytes" in rest
    assert rest.endswith(b"complete")
    assert b"SECOND ONE" in rest


def test_filter_app_that_ignores_the_data_still_ends_cleanly(router: RunningProcess) -> None:
    """The server reads DATA through its end before END_REQUEST: the web server is never
    cut off mid-write, and the kept connection serves the next request."""
    data = b"x" * 300_000
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        first = client.request(
            build_params("GET", "/hello"), role=Role.FILTER, data=data, keep_connection=True
        )
        second = client.request(build_params("GET", "/hello"), keep_connection=True)
    assert first.body == second.body == b"Hello, world!"


def test_roles_setting_refuses_the_others() -> None:
    with run_fcgigw("--roles", "responder,filter", "testapps:router") as server:
        with FastCGIClient(server.address, timeout=TIMEOUT) as client:
            refused = client.request(build_params("GET", "/hello"), role=Role.AUTHORIZER)
            served = client.request(build_params("GET", "/hello"), role=Role.FILTER, data=b"")
    assert refused.protocol_status == ProtocolStatus.UNKNOWN_ROLE
    assert served.body == b"Hello, world!"


# -- the client CLI and the diagnostics page ---------------------------------------------------


def test_client_cli_sends_a_file_to_a_filter(router: RunningProcess, tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    path.write_bytes(b"abc")
    result = subprocess.run(
        [*CLIENT, "--role", "filter", "--data-file", str(path), router.address, "/filter_upper"],
        capture_output=True,
        timeout=TIMEOUT,
        env=child_environment(),
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"ABC" in result.stdout
    assert b"3 of 3 bytes" in result.stdout


def test_diagnostics_as_an_authorizer_fails_closed_and_reports() -> None:
    with run_fcgigw() as server, FastCGIClient(server.address, timeout=TIMEOUT) as client:
        params = build_params(
            "GET", "/?format=json", headers=[("Authorization", basic("alice", "pw"))]
        )
        response = client.request(params, role=Role.AUTHORIZER)
        filtered = client_request_filter(server)
    assert response.status == 403
    report = json.loads(response.body)
    assert report["role"] == "AUTHORIZER"
    assert report["authorizer"]["user"] == "alice"
    assert report["authorizer"]["password_received"] is True
    assert "pw" not in response.body.decode()  # the password itself is never shown
    assert filtered["filter"]["data_bytes_received"] == 7
    assert filtered["filter"]["FCGI_DATA_LENGTH"] == "7"


def client_request_filter(server: RunningProcess) -> dict[str, object]:
    params = build_params("GET", "/?format=json", extra=[("FCGI_DATA_LENGTH", "7")])
    with FastCGIClient(server.address, timeout=TIMEOUT) as client:
        response = client.request(params, role=Role.FILTER, data=b"1234567")
    result: dict[str, object] = json.loads(response.body)
    return result


def test_end_request_follows_the_data_stream(router: RunningProcess) -> None:
    """END_REQUEST only after DATA's empty record, even when the app finished earlier."""
    with FastCGIClient(router.address, timeout=TIMEOUT) as client:
        client.begin(build_params("GET", "/hello"), role=Role.FILTER, keep_connection=True)
        client.send_stream(1, b"", RecordType.STDIN)
        client.send_event(InputData(1, b"part", RecordType.DATA))
        # Shorter than INPUT_QUIET_SECONDS (0.3 s), after which END_REQUEST goes out anyway
        # behind nginx, so that the test holds whatever server fcgigw takes this client for.
        client.sock.settimeout(0.15)
        events = []
        with pytest.raises(TimeoutError):
            collect_until_silent(client, events)  # whatever output comes, END_REQUEST must not
        assert not any(isinstance(event, EndRequest) for event in events)
        client.sock.settimeout(TIMEOUT)
        client.send_stream(1, b"", RecordType.DATA)
        rest = list(client.response_events(1))
    assert isinstance(rest[-1], EndRequest)


def collect_until_silent(client: FastCGIClient, events: list[object]) -> None:
    """Append events until the socket times out (TimeoutError)."""
    while True:
        events.append(client.next_event())
