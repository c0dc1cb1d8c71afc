"""The FastAPI and Django (ASGI) examples under fcgigw, behind real nginx with stock
fastcgi_params, with and without fastcgi_keep_conn."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from servers import RunningProcess, nginx_binary, run_fcgigw, run_nginx
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration

Servers = tuple[RunningProcess, RunningProcess]

FASTAPI_APP = "examples.fastapi_app:app"
DJANGO_APP = "examples.django_site.mysite.asgi:application"
UPLOAD_BYTES = 3 * 1024 * 1024 + 17  # past Django's 2.5 MiB in-memory upload limit


def require_nginx() -> None:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")


@pytest.fixture(scope="module")
def fastapi_fcgigw() -> Iterator[RunningProcess]:
    require_nginx()
    with run_fcgigw("--access-log", FASTAPI_APP) as server:
        yield server


@pytest.fixture(scope="module")
def django_fcgigw() -> Iterator[RunningProcess]:
    require_nginx()
    with run_fcgigw("--access-log", DJANGO_APP) as server:
        yield server


@pytest.fixture(scope="module", params=[False, True], ids=["no-keepalive", "keep-conn"])
def nginx_fastapi(
    request: pytest.FixtureRequest, fastapi_fcgigw: RunningProcess
) -> Iterator[Servers]:
    with run_nginx(fastapi_fcgigw.address, keepalive=request.param) as nginx:
        yield nginx, fastapi_fcgigw


@pytest.fixture(scope="module", params=[False, True], ids=["no-keepalive", "keep-conn"])
def nginx_django(
    request: pytest.FixtureRequest, django_fcgigw: RunningProcess
) -> Iterator[Servers]:
    with run_nginx(django_fcgigw.address, keepalive=request.param) as nginx:
        yield nginx, django_fcgigw


def get_json(nginx: RunningProcess, path: str, **kwargs: Any) -> Any:
    status, headers, body = http_request(nginx, kwargs.pop("method", "GET"), path, **kwargs)
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file field, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload_payload() -> bytes:
    return hashlib.sha256(b"seed").digest() * (UPLOAD_BYTES // 32) + b"z" * (UPLOAD_BYTES % 32)


# FastAPI


def test_fastapi_json_greeting(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    assert get_json(nginx, "/") == {"message": "Hello from FastAPI over FastCGI"}


def test_fastapi_path_and_query_parameters(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    assert get_json(nginx, "/items/42?q=caf%C3%A9%20au%20lait") == {
        "item_id": 42,
        "q": "caf\u00e9 au lait",
    }
    status, _, body = http_request(nginx, "GET", "/items/not-a-number")
    assert status == 422, body


def test_fastapi_multipart_upload(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    content = upload_payload()
    body, headers = multipart("file", "data.bin", content)
    seen = get_json(nginx, "/upload", method="POST", body=body, headers=headers)
    assert seen == {
        "filename": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_fastapi_json_post_is_validated(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    item = {"name": "widget", "price": 9.5, "tags": ["a", "\u00e9"]}
    json_headers = {"Content-Type": "application/json"}
    body = json.dumps(item).encode()
    assert get_json(nginx, "/json", method="POST", body=body, headers=json_headers) == item
    status, _, body = http_request(
        nginx, "POST", "/json", body=b'{"name": "widget"', headers=json_headers
    )
    assert status == 422, body
    status, _, body = http_request(
        nginx, "POST", "/json", body=b'{"name": "widget"}', headers=json_headers
    )
    assert status == 422
    assert json.loads(body)["detail"][0]["loc"] == ["body", "price"]


def test_fastapi_streaming_response(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    status, headers, body = http_request(nginx, "GET", "/stream")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert body == b"".join(f"line {n}\n".encode() for n in range(5))


def test_fastapi_lifespan_ran_before_serving(nginx_fastapi: Servers) -> None:
    nginx, _ = nginx_fastapi
    seen = get_json(nginx, "/state")
    assert seen["greeting"] == "set at startup"
    assert seen["lifespan_greeting"] == "hello from lifespan state"
    assert seen["started_at"] > 0


def test_fastapi_sees_root_path_client_and_role(nginx_fastapi: Servers) -> None:
    nginx, fcgigw = nginx_fastapi
    count = fcgigw.log().count('"GET /whoami" 200')
    seen = get_json(nginx, "/whoami")
    assert seen == {
        "root_path": "",
        "path": "/whoami",
        "client_host": "127.0.0.1",
        "role": "RESPONDER",
    }
    fcgigw.wait_for_log('"GET /whoami" 200', count + 1)


def test_fastapi_under_a_sub_path_with_root_path() -> None:
    """nginx `location /api/` with stock params: the whole path arrives in SCRIPT_NAME;
    --root-path /api gives FastAPI root_path "/api", routes match without the prefix, and
    URLs the app builds (request.url, the docs' openapi.json link) keep it."""
    require_nginx()
    with (
        run_fcgigw("--root-path", "/api", FASTAPI_APP) as fcgigw,
        run_nginx(fcgigw.address, location="/api/") as nginx,
    ):
        item = get_json(nginx, "/api/items/3?q=x")
        whoami = get_json(nginx, "/api/whoami")
        docs_status, _, docs = http_request(nginx, "GET", "/api/docs")
    assert item == {"item_id": 3, "q": "x"}
    assert (whoami["root_path"], whoami["path"]) == ("/api", "/api/whoami")
    assert docs_status == 200
    assert b"/api/openapi.json" in docs


# Django


def test_django_index_page(nginx_django: Servers) -> None:
    nginx, _ = nginx_django
    status, headers, body = http_request(nginx, "GET", "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"Hello from Django over FastCGI" in body
    assert b'href="/form/"' in body


def fetch_csrf(nginx: RunningProcess) -> tuple[str, str]:
    """GET the form: the csrftoken cookie and the form's csrfmiddlewaretoken."""
    status, headers, body = http_request(nginx, "GET", "/form/")
    assert status == 200, body
    cookie = re.search(r"csrftoken=([^;]+)", headers["Set-Cookie"])
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    assert cookie is not None
    assert token is not None
    return cookie.group(1), token.group(1).decode()


def test_django_csrf_form_round_trip(nginx_django: Servers) -> None:
    nginx, _ = nginx_django
    cookie, token = fetch_csrf(nginx)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = http_request(
        nginx,
        "POST",
        "/form/",
        body=f"name=caf%C3%A9&csrfmiddlewaretoken={token}".encode(),
        headers={**form, "Cookie": f"csrftoken={cookie}"},
    )
    assert status == 200, body
    assert "Hello, caf\u00e9!" in body.decode()


def test_django_post_without_csrf_token_is_forbidden(nginx_django: Servers) -> None:
    nginx, _ = nginx_django
    cookie, _ = fetch_csrf(nginx)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = http_request(nginx, "POST", "/form/", body=b"name=x", headers=form)
    assert status == 403
    status, _, _ = http_request(
        nginx, "POST", "/form/", body=b"name=x", headers={**form, "Cookie": f"csrftoken={cookie}"}
    )
    assert status == 403


def test_django_file_upload(nginx_django: Servers) -> None:
    nginx, _ = nginx_django
    content = upload_payload()
    body, headers = multipart("file", "data.bin", content)
    seen = get_json(nginx, "/upload/", method="POST", body=body, headers=headers)
    assert seen == {
        "name": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_django_request_host_path_and_scheme(nginx_django: Servers) -> None:
    nginx, _ = nginx_django
    seen = get_json(nginx, "/where/?x=1")
    # Upstream fastcgi_params passes the Host header as sent (with the port); Debian's recent
    # packages send `HTTP_HOST $host`, which drops it. Either way it passes ALLOWED_HOSTS.
    host = seen.pop("host")
    assert host in (nginx.address, "127.0.0.1")
    assert seen == {
        "path": "/where/",
        "path_info": "/where/",
        "script_name": "",
        "secure": False,
        "absolute_uri": f"http://{host}/where/?x=1",
    }


def test_django_error_is_a_500_with_traceback_in_fcgigw_log(nginx_django: Servers) -> None:
    nginx, fcgigw = nginx_django
    error = "RuntimeError: this Django view fails on purpose"
    count = fcgigw.log().count(error)
    status, _, body = http_request(nginx, "GET", "/fail/")
    assert status == 500
    assert b"on purpose" not in body
    # settings.LOGGING sends django.request errors to stderr, which is fcgigw's log.
    fcgigw.wait_for_log(error, count + 1)
    fcgigw.wait_for_log('"GET /fail/" 500', count + 1)
    assert "Traceback (most recent call last)" in fcgigw.log()
    # the server keeps serving after the failure
    assert http_request(nginx, "GET", "/")[0] == 200


def test_django_under_a_sub_path_with_root_path() -> None:
    """nginx `location /site/` and --root-path /site: Django gets SCRIPT_NAME "/site" and
    the URLs it reverses keep the prefix."""
    require_nginx()
    with (
        run_fcgigw("--root-path", "/site", DJANGO_APP) as fcgigw,
        run_nginx(fcgigw.address, location="/site/") as nginx,
    ):
        seen = get_json(nginx, "/site/where/")
        status, _, page = http_request(nginx, "GET", "/site/")
    assert (seen["path"], seen["path_info"], seen["script_name"]) == (
        "/site/where/",
        "/where/",
        "/site",
    )
    assert status == 200
    assert b'href="/site/form/"' in page
