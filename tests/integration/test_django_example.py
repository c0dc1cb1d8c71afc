"""The Django example as a real project: migrated, its static files collected and served by
real nginx from the shipped examples/django_site/nginx.conf (only ports and paths changed),
the admin login, the CSRF form and an upload, through both its WSGI and its ASGI entry point."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from http.client import HTTPMessage
from http.cookies import SimpleCookie
from pathlib import Path

import django
import pytest
from servers import (
    REPO,
    RunningProcess,
    child_environment,
    example_config,
    nginx_binary,
    run_fcgigw,
    run_nginx_config,
    short_tempdir,
)
from test_nginx_asgi import multipart, upload_payload
from test_nginx_flask import http_request

pytestmark = pytest.mark.integration

SITE = REPO / "examples" / "django_site"
SITE_CSS = SITE / "mysite" / "static" / "mysite" / "site.css"
ADMIN_CSS = Path(django.__file__).parent / "contrib" / "admin" / "static" / "admin" / "css"
APPS = {
    "wsgi": "examples.django_site.mysite.wsgi:application",
    "asgi": "examples.django_site.mysite.asgi:application",
}
PASSWORD = "correct horse battery staple"
MANAGE_TIMEOUT_SECONDS = 60

Servers = tuple[RunningProcess, RunningProcess]


@pytest.fixture(scope="module")
def project() -> Iterator[dict[str, str]]:
    """A migrated database with a superuser `admin` and the collected static files, in a
    temporary directory; the environment that points the settings at them."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    workdir = Path(short_tempdir())
    env = {
        **child_environment(),
        "DJANGO_DB_PATH": str(workdir / "db.sqlite3"),
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    try:
        for command in (
            ["migrate", "--noinput"],
            ["collectstatic", "--noinput"],
            ["createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com"],
        ):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=SITE,
                env=env,
                check=True,
                capture_output=True,
                timeout=MANAGE_TIMEOUT_SECONDS,
            )
        yield env
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=sorted(APPS))
def site(request: pytest.FixtureRequest, project: dict[str, str]) -> Iterator[Servers]:
    """fcgigw serving the example (default threaded server) behind nginx with the shipped
    config: /static/ from the collected files, the rest over FastCGI."""
    with run_fcgigw("--access-log", APPS[request.param], env=project) as fcgigw:
        values = {
            "        listen 127.0.0.1:8080;": "        listen 127.0.0.1:{port};",
            "        server 127.0.0.1:9000;": f"        server {fcgigw.address};",
            "            alias ": f"            alias {project['DJANGO_STATIC_ROOT']}/;",
        }
        if os.geteuid() == 0:  # www-data could not read the temporary STATIC_ROOT
            values["user www-data;"] = "user root;"
        conf = example_config(SITE / "nginx.conf", values)
        with run_nginx_config(conf) as nginx:
            yield nginx, fcgigw


class Browser:
    """Requests to the site through nginx, keeping the cookies it sets (csrftoken,
    sessionid) like a browser would, and following no redirects."""

    def __init__(self, nginx: RunningProcess) -> None:
        self.nginx = nginx
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, HTTPMessage, bytes]:
        headers: dict[str, str] = {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        status, response_headers, response_body = http_request(
            self.nginx, method, path, body=body, headers=headers
        )
        for line in response_headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(line).items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:  # Django deletes a cookie with an empty value and Max-Age=0
                    self.cookies.pop(name, None)
        return status, response_headers, response_body

    def csrf_token(self, path: str) -> str:
        """GET ``path`` (which sets the csrftoken cookie) and return its form's token."""
        status, _, body = self.request("GET", path)
        assert status == 200, body
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        assert token is not None, body
        assert "csrftoken" in self.cookies
        return token.group(1).decode()

    def log_in(self, password: str) -> tuple[int, HTTPMessage, bytes]:
        form = {
            "csrfmiddlewaretoken": self.csrf_token("/admin/login/"),
            "username": "admin",
            "password": password,
            "next": "/admin/",
        }
        return self.request("POST", "/admin/login/?next=/admin/", form)


def test_static_files_are_served_by_nginx(site: Servers) -> None:
    nginx, fcgigw = site
    status, _, page = http_request(nginx, "GET", "/")
    assert status == 200
    assert b'href="/static/mysite/site.css"' in page
    for path, source in (
        ("/static/mysite/site.css", SITE_CSS),
        ("/static/admin/css/base.css", ADMIN_CSS / "base.css"),
    ):
        status, headers, body = http_request(nginx, "GET", path)
        assert status == 200, path
        assert headers["Content-Type"] == "text/css"
        assert body == source.read_bytes()
        assert "Last-Modified" in headers  # nginx's static module; Django's views send none
    # The access log line of a later request to Django is written: no /static/ line before it.
    count = fcgigw.log().count('"GET /" 200')
    assert http_request(nginx, "GET", "/")[0] == 200
    fcgigw.wait_for_log('"GET /" 200', count + 1)
    assert " /static/" not in fcgigw.log()


def test_admin_rejects_a_wrong_password(site: Servers) -> None:
    nginx, _ = site
    browser = Browser(nginx)
    status, headers, _ = browser.request("GET", "/admin/")
    assert (status, headers["Location"]) == (302, "/admin/login/?next=/admin/")
    status, _, body = browser.log_in("wrong")
    assert status == 200
    assert b"Please enter the correct username and password" in body
    assert "sessionid" not in browser.cookies


def test_admin_login_session_and_logout(site: Servers) -> None:
    nginx, _ = site
    browser = Browser(nginx)
    status, headers, body = browser.log_in(PASSWORD)
    assert (status, headers["Location"]) == (302, "/admin/"), body
    assert "sessionid" in browser.cookies
    status, _, body = browser.request("GET", "/admin/")
    assert status == 200
    assert b"Site administration" in body
    assert b'href="/static/admin/css/base.css"' in body
    # Django 5 logs out with a POST from the admin's own form (CSRF-protected).
    token = browser.csrf_token("/admin/")
    status, _, body = browser.request("POST", "/admin/logout/", {"csrfmiddlewaretoken": token})
    assert status == 200
    assert b"Logged out" in body
    assert "sessionid" not in browser.cookies
    assert browser.request("GET", "/admin/")[0] == 302


def test_csrf_form_post_and_file_upload(site: Servers) -> None:
    nginx, _ = site
    browser = Browser(nginx)
    token = browser.csrf_token("/form/")
    status, _, body = browser.request(
        "POST", "/form/", {"name": "caf\u00e9", "csrfmiddlewaretoken": token}
    )
    assert status == 200, body
    assert "Hello, caf\u00e9!" in body.decode()
    content = upload_payload()
    upload, headers = multipart("file", "data.bin", content)
    status, _, body = http_request(nginx, "POST", "/upload/", body=upload, headers=headers)
    assert status == 200, body
    assert json.loads(body) == {
        "name": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
