"""Apache mod_proxy_fcgi and a chunked request body. mod_proxy_fcgi passes such a body on with
no CONTENT_LENGTH, and Django reads CONTENT_LENGTH bytes of it (as PEP 3333 tells apps to):
none. ``SetEnv proxy-sendcl 1``, which examples/servers/apache-proxy-fcgi.conf and the README
set, makes Apache read the body first and send its length. Real Apache runs from the example
config (ports and paths changed), with the Django example behind it, through its WSGI and
its ASGI entry point; the upload is a chunked multipart POST, as from a client that streams
a file without knowing its size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from matrix_clients import TIMEOUT, HttpClient, Response
from matrix_servers import EXAMPLES, tls_certificate
from servers import (
    RunningProcess,
    apache_binary,
    example_config,
    free_port,
    run_apache,
    run_fcgigw,
    short_tempdir,
)
from test_nginx_asgi import multipart, upload_payload

pytestmark = pytest.mark.integration

APPS = {
    "wsgi": "examples.django_site.mysite.wsgi:application",
    "asgi": "examples.django_site.mysite.asgi:application",
}
SENDCL = "    SetEnv proxy-sendcl 1"


@pytest.fixture(scope="module", params=sorted(APPS))
def django(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The Django example under fcgigw, mounted at /app as the example's ProxyPass has it."""
    if apache_binary() is None:
        pytest.skip("apache2 is not installed (apt-get install apache2; .ci/run does)")
    with run_fcgigw("--root-path", "/app", "--access-log", APPS[request.param]) as app:
        yield app


@contextlib.contextmanager
def apache(django: RunningProcess, *, sendcl: bool) -> Iterator[str]:
    """examples/servers/apache-proxy-fcgi.conf in front of ``django`` (without the
    proxy-sendcl line unless ``sendcl``); yields Apache's address."""
    workdir = Path(short_tempdir())
    try:
        cert, key = tls_certificate(workdir)
        values = {
            "Define HTTP_PORT": "Define HTTP_PORT {port}",
            "Define FCGIGW ": f"Define FCGIGW fcgi://{django.address}/",
            "Define FCGIGW_SOCKET": f"Define FCGIGW_SOCKET {workdir}/unused.sock",
            "Define TLS_CERT": f"Define TLS_CERT {cert}",
            "Define TLS_KEY": f"Define TLS_KEY {key}",
            "Define HTTPS_PORT": f"Define HTTPS_PORT {free_port()}",
            "Define RUN_DIR": "Define RUN_DIR {dir}",
        }
        if not sendcl:
            values[SENDCL] = ""
        with run_apache(example_config(EXAMPLES / "apache-proxy-fcgi.conf", values)) as server:
            yield server.address
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def chunked_upload(address: str, content: bytes) -> Response:
    body, headers = multipart("file", "data.bin", content)
    with contextlib.closing(HttpClient(address, timeout=TIMEOUT)) as client:
        return client.request("POST", "/app/upload/", list(headers.items()), body, chunked=True)


def test_with_proxy_sendcl_a_chunked_upload_reaches_django_whole(django: RunningProcess) -> None:
    content = upload_payload()
    with apache(django, sendcl=True) as address:
        response = chunked_upload(address, content)
    assert response.status == 200, response
    assert json.loads(response.body) == {
        "name": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_without_proxy_sendcl_django_reads_an_empty_body(django: RunningProcess) -> None:
    """Why the example sets it: the same upload, and Django finds no file in it."""
    with apache(django, sendcl=False) as address:
        response = chunked_upload(address, upload_payload())
    assert (response.status, response.body) == (400, b"send a multipart form with a 'file' field")
