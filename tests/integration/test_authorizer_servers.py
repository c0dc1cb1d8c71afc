"""The Authorizer example (examples/authorizer/basic_auth.py, WSGI and ASGI) under fcgigw,
behind real lighttpd and real Apache (mod_authnz_fcgi) run from the example configs as
shipped, with only their "adjust these lines" values rewritten."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from servers import (
    REPO,
    RunningProcess,
    apache_binary,
    child_environment,
    example_config,
    lighttpd_binary,
    run_apache,
    run_fcgigw,
    run_lighttpd,
)
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples" / "authorizer"
USERS = "alice:secret:admin,bob:hunter2:reader"
SECRET = b"the private file\n"
BODY = hashlib.sha256(b"seed").digest() * 4096 + b"tail"  # 128 KiB, several STDIN records


@pytest.fixture(scope="module", params=["application", "asgi_application"], ids=["wsgi", "asgi"])
def authorizer(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    env = child_environment()
    env["FCGIGW_EXAMPLE_USERS"] = USERS
    app = f"examples.authorizer.basic_auth:{request.param}"
    with run_fcgigw("--access-log", app, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def responder() -> Iterator[RunningProcess]:
    with run_fcgigw("--access-log", "testapps:router") as server:
        yield server


def port(server: RunningProcess) -> str:
    return server.address.rpartition(":")[2]


@pytest.fixture(scope="module")
def lighttpd(
    authorizer: RunningProcess, responder: RunningProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProcess]:
    if lighttpd_binary() is None:
        pytest.skip("lighttpd is not installed (apt-get install lighttpd; .ci/run installs it)")
    static = tmp_path_factory.mktemp("static")
    (static / "private").mkdir()
    (static / "private" / "secret.txt").write_bytes(SECRET)
    conf = example_config(
        EXAMPLES / "lighttpd.conf",
        {
            "var.http_port": "var.http_port = {port}",
            "var.authorizer_port": f"var.authorizer_port = {port(authorizer)}",
            "var.app_port": f"var.app_port = {port(responder)}",
            "var.static_dir": f'var.static_dir = "{static}"',
        },
    )
    with run_lighttpd(conf) as server:
        yield server


@pytest.fixture(scope="module")
def apache(authorizer: RunningProcess, responder: RunningProcess) -> Iterator[RunningProcess]:
    if apache_binary() is None:
        pytest.skip("apache2 is not installed (apt-get install apache2; .ci/run installs it)")
    conf = example_config(
        EXAMPLES / "apache-authnz-fcgi.conf",
        {
            "Define HTTP_PORT": "Define HTTP_PORT {port}",
            "Define AUTHORIZER": f"Define AUTHORIZER fcgi://127.0.0.1:{port(authorizer)}/",
            "Define APP": f"Define APP fcgi://127.0.0.1:{port(responder)}/",
            "Define RUN_DIR": "Define RUN_DIR {dir}",
        },
    )
    with run_apache(conf) as server:
        yield server


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def echo(server: RunningProcess, credentials: str, **kwargs: Any) -> dict[str, Any]:
    method, headers = kwargs.pop("method", "GET"), basic(credentials)
    status, _, body = http_request(server, method, "/app/echo", headers=headers, **kwargs)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


# lighttpd: "mode" => "authorizer"; the Authorizer's own 401 reaches the client.


def test_lighttpd_private_file_needs_credentials(
    lighttpd: RunningProcess, authorizer: RunningProcess
) -> None:
    count = authorizer.log().count('"GET /private/secret.txt" 401')
    status, headers, body = http_request(lighttpd, "GET", "/private/secret.txt")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="fcgigw example"'
    assert body == b"Log in to see this.\n"
    authorizer.wait_for_log('"GET /private/secret.txt" 401', count + 1)


def test_lighttpd_private_file_wrong_password(lighttpd: RunningProcess) -> None:
    status, headers, body = http_request(
        lighttpd, "GET", "/private/secret.txt", headers=basic("alice:wrong")
    )
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="fcgigw example"'
    assert body == b"Wrong user name or password.\n"


def test_lighttpd_serves_private_file_to_a_known_user(
    lighttpd: RunningProcess, authorizer: RunningProcess
) -> None:
    count = authorizer.log().count('"GET /private/secret.txt" 200')
    status, _, body = http_request(
        lighttpd, "GET", "/private/secret.txt", headers=basic("alice:secret")
    )
    assert status == 200
    assert body == SECRET
    authorizer.wait_for_log('"GET /private/secret.txt" 200', count + 1)


def test_lighttpd_app_gets_the_authorizer_variables(
    lighttpd: RunningProcess, authorizer: RunningProcess, responder: RunningProcess
) -> None:
    count = responder.log().count('"GET /app/echo?x=1" 200')
    status, _, body = http_request(lighttpd, "GET", "/app/echo?x=1", headers=basic("alice:secret"))
    assert status == 200, body
    seen = json.loads(body)
    assert (seen["AUTHZ_USER"], seen["AUTHZ_ROLE"]) == ("alice", "admin")
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/echo")
    assert seen["FCGI_ROLE"] == "RESPONDER"
    responder.wait_for_log('"GET /app/echo?x=1" 200', count + 1)
    authorizer.wait_for_log('"GET /app/echo?x=1" 200')


def test_lighttpd_app_refused_without_credentials(lighttpd: RunningProcess) -> None:
    status, headers, body = http_request(lighttpd, "GET", "/app/echo")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="fcgigw example"'
    assert body == b"Log in to see this.\n"


def test_lighttpd_request_body_reaches_the_app_whole(lighttpd: RunningProcess) -> None:
    """lighttpd sends the Authorizer only an empty STDIN; the body goes to the responder."""
    seen = echo(lighttpd, "bob:hunter2", method="POST", body=BODY)
    assert (seen["AUTHZ_USER"], seen["AUTHZ_ROLE"]) == ("bob", "reader")
    assert seen["body_length"] == len(BODY)
    assert seen["body_sha256"] == hashlib.sha256(BODY).hexdigest()


# Apache mod_authnz_fcgi: authentication provider (AuthBasicProvider) + authorization
# provider (Require); Apache answers refusals with its own 401 page.


def apache_refused(status: int, headers: Any, body: bytes) -> None:
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="fcgigw example"'
    assert b"<title>401 Unauthorized</title>" in body
    assert b"Log in" not in body
    assert b"Wrong user name" not in body


def test_apache_refuses_without_credentials(apache: RunningProcess) -> None:
    apache_refused(*http_request(apache, "GET", "/app/echo"))


def test_apache_refuses_a_wrong_password(
    apache: RunningProcess, authorizer: RunningProcess
) -> None:
    count = authorizer.log().count('"GET /app/echo" 401')
    apache_refused(*http_request(apache, "GET", "/app/echo", headers=basic("alice:wrong")))
    apache_refused(*http_request(apache, "GET", "/app/echo", headers=basic("carol:secret")))
    authorizer.wait_for_log('"GET /app/echo" 401', count + 2)


def test_apache_app_gets_the_authorizer_variables(
    apache: RunningProcess, authorizer: RunningProcess
) -> None:
    count = authorizer.log().count('"GET /app/echo" 200')
    seen = echo(apache, "alice:secret")
    # AUTHZ_USER from the authentication call, AUTHZ_ROLE from the authorization call.
    assert (seen["AUTHZ_USER"], seen["AUTHZ_ROLE"]) == ("alice", "admin")
    assert seen["REMOTE_USER"] == "alice"
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"]) == ("/app", "/echo")
    assert "HTTP_AUTHORIZATION" not in seen
    # One access line per phase: authentication, then authorization.
    authorizer.wait_for_log('"GET /app/echo" 200', count + 2)


def test_apache_grants_any_known_user(apache: RunningProcess) -> None:
    """The example's authorization phase allows every known user, whatever the role."""
    seen = echo(apache, "bob:hunter2")
    assert (seen["AUTHZ_USER"], seen["AUTHZ_ROLE"], seen["REMOTE_USER"]) == ("bob", "reader", "bob")


def test_apache_request_body_reaches_the_app_whole(apache: RunningProcess) -> None:
    seen = echo(apache, "alice:secret", method="POST", body=BODY)
    assert seen["body_length"] == len(BODY)
    assert seen["body_sha256"] == hashlib.sha256(BODY).hexdigest()
