"""The page fcgigw serves when no APP is given: what the web server sent, what fcgigw made of
it, which server it looks like, and warnings for the classic misconfigurations
(web-servers.md §6). ``?format=json`` gives the same as JSON.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from .adapters.params import is_mount_point
from .authorizer import AuthRequest
from .readme import guidance_html

Pairs = Sequence[tuple[bytes, bytes]]

#: Variables only a whole process environment has: cgi-fcgi forwards it all (web-servers §4).
#: Not PATH: Apache sends its own PATH as a param (mod_proxy_fcgi and mod_fcgid alike).
_ENVIRONMENT_LEAKS = ("HOME", "SHELL", "USER", "LOGNAME", "PWD")


#: The README, whose "Web servers" section has a part per server; the page shows that part.
README = "README.md"

#: Each server detect_server() can name, and the anchor of its part of the README.
SERVER_SECTIONS = {
    "nginx": "nginx",
    "apache-proxy-fcgi": "apache-mod_proxy_fcgi",
    "apache-fcgid": "apache-mod_fcgid",
    "apache": "authorizer-and-filter-roles",  # an Authorizer call: mod_authnz_fcgi or mod_fcgid
    "lighttpd": "lighttpd",
    "h2o": "h2o",
    "caddy": "caddy",
    "haproxy": "haproxy",
    "cgi-fcgi": "cgi-fcgi",
}

#: SERVER_SOFTWARE prefixes, checked after the Apache proxy_fcgi shape (it says Apache too).
_SOFTWARE = (
    (b"nginx", "nginx"),
    (b"lighttpd", "lighttpd"),
    (b"h2o", "h2o"),
    (b"caddy", "caddy"),
    (b"haproxy", "haproxy"),
    (b"apache", "apache-fcgid"),
)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def detect_server(params: Pairs) -> str | None:
    """Guess the web server from the shape of its params (web-servers.md §1, §4, §5)."""
    values = dict(params)
    if values.get(b"SCRIPT_FILENAME", b"").startswith(b"proxy:fcgi://"):
        return "apache-proxy-fcgi"
    software = values.get(b"SERVER_SOFTWARE", b"").lower()
    for marker, server in _SOFTWARE:
        if software.startswith(marker):
            return server
    return _detect_by_shape(values)


def _detect_by_shape(values: dict[bytes, bytes]) -> str | None:
    if b"FCGI_APACHE_ROLE" in values:
        return "apache"
    if b"PATH" in values and b"HOME" in values:
        return "cgi-fcgi"
    if b"SERVER_ADDR" not in values and values.get(b"DOCUMENT_URI") == b"":
        return "caddy"
    return None


def server_section(server: str | None) -> str:
    """The anchor of the README section on setting up ``server``: its part of "Web servers",
    or the whole section when the server is not recognised."""
    return SERVER_SECTIONS.get(server or "", "web-servers")


def server_docs(server: str | None) -> str:
    """Where the README says how to set up ``server``, as ``README.md#anchor``."""
    return f"{README}#{server_section(server)}"


def warnings(params: Pairs, environ: dict[str, Any]) -> list[str]:
    """Configuration problems visible in one request, each with what to change."""
    names = [name for name, _ in params]
    values = dict(params)
    found: list[str] = []
    mount = proxy_pass_mount(values)
    if mount is not None and mount != environ.get("SCRIPT_NAME", ""):
        found.append(_mount_warning(mount, environ.get("SCRIPT_NAME", "")))
    if values.get(b"SCRIPT_NAME", b"").count(b"/") > 1 and b"PATH_INFO" in names:
        found.append(
            "SCRIPT_NAME has more than one segment while PATH_INFO is set: lighttpd with a "
            'trailing slash in its prefix ("/app/") moves a path segment into SCRIPT_NAME. Use '
            '"/app" without the slash.'
        )
    if is_mount_point(lambda name: _text(values.get(name.encode()))):
        found.append(
            "The server sent SCRIPT_NAME without PATH_INFO, and its document root holds that "
            "path: fcgigw took this URL for the point where the app is mounted, as HAProxy "
            "(path-info) and lighttpd send it for exactly that URL. If the app is not mounted "
            "there, the server does not split the path: give HAProxy's fcgi-app a path-info "
            "line (path-info ^()(/.*)$ at the root of the site, ^(/app)(/.*)?$ under /app), or "
            "start fcgigw with --root-path PREFIX."
        )
    server = detect_server(params) or ""
    if server.startswith("apache") and b"HTTP_AUTHORIZATION" not in names:
        found.append(
            "No HTTP_AUTHORIZATION arrived. Apache drops it unless told otherwise: add "
            "'CGIPassAuth On' if the app checks credentials itself."
        )
    if any(name.decode("latin-1") in _ENVIRONMENT_LEAKS for name in names):
        found.append(
            "The params include HOME, SHELL or USER: the server forwards its whole "
            "environment (cgi-fcgi does), which may leak secrets to the app and its logs."
        )
    if b"HTTP_PROXY" in names:
        found.append("A Proxy: request header arrived as HTTP_PROXY; fcgigw dropped it (httpoxy).")
    host = values.get(b"HTTP_HOST", b"")
    port = values.get(b"SERVER_PORT", b"")
    if host and b":" not in host and port not in (b"", b"80", b"443"):
        found.append(
            f"HTTP_HOST has no port while SERVER_PORT is {port.decode('latin-1')}: Debian's "
            "nginx fastcgi_params sets HTTP_HOST to $host. Use $http_host if URLs built by the "
            "app lose the port."
        )
    return found


def proxy_pass_mount(values: dict[bytes, bytes]) -> str | None:
    """Where Apache's ``ProxyPass`` mounts the app: SCRIPT_NAME holds the whole path, and
    SCRIPT_FILENAME the backend URL with the rest of it (web-servers.md §4), so the mount is
    what the rest leaves over. None when the request does not show it: with a PATH_INFO,
    another server, or a backend URL with a path of its own. Stock nginx shows nothing of its
    mount, so there the page only says where fcgigw takes the app to be."""
    target = values.get(b"SCRIPT_FILENAME", b"")
    if b"PATH_INFO" in values or not target.startswith(_PROXY_FCGI):
        return None
    rest = b"/" + target[len(_PROXY_FCGI) :].partition(b"/")[2].partition(b"?")[0]
    rest = unquote_to_bytes(rest)  # Apache leaves it percent-encoded; SCRIPT_NAME is decoded
    script_name = values.get(b"SCRIPT_NAME", b"")
    if not script_name.endswith(rest):
        return None
    return script_name[: len(script_name) - len(rest)].decode("latin-1")


_PROXY_FCGI = b"proxy:fcgi://"


def _mount_warning(mount: str, script_name: str) -> str:
    fix = (
        "start fcgigw without --root-path"
        if not mount
        else f"start fcgigw with --root-path {mount}, or make Apache split the path "
        f'(SetEnvIf Request_URI "^{mount}/" proxy-fcgi-pathinfo=unescape)'
    )
    return (
        f"Apache's ProxyPass mounts the app at {mount or '/'}, but fcgigw takes it to be mounted "
        f"at {script_name or '/'}, so the app sees wrong paths and builds wrong links: {fix}."
    )


def report(environ: dict[str, Any]) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    params: Pairs = environ.get("fcgi.params", ())
    server = detect_server(params)
    return {
        "role": environ.get("FCGI_ROLE", "RESPONDER"),
        "server": server,
        "docs": server_docs(server),
        "params": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in params],
        "derived": {
            "SCRIPT_NAME": environ.get("SCRIPT_NAME", ""),
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "wsgi.url_scheme": environ.get("wsgi.url_scheme", ""),
            "host": environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""),
            "CONTENT_LENGTH": environ.get("CONTENT_LENGTH"),
        },
        "warnings": warnings(params, environ),
        **_role_report(environ),
    }


def _role_report(environ: dict[str, Any]) -> dict[str, Any]:
    """What the Authorizer and Filter roles (§6.3, §6.4) bring besides the params."""
    role = environ.get("FCGI_ROLE")
    if role == "AUTHORIZER":
        request = AuthRequest({k: v for k, v in environ.items() if isinstance(v, str)})
        credentials = request.credentials()
        return {
            "authorizer": {
                "decision": "deny (403): no application is configured, fcgigw fails closed",
                "apache_role": request.apache_role,
                "user": credentials[0] if credentials else None,
                "password_received": credentials is not None,
                "would_grant": "an Allow's variables, as Variable-NAME headers: the web "
                "server passes each to the responder as param NAME",
            }
        }
    if role == "FILTER":
        data = environ["fcgi.data"].read()
        return {
            "filter": {
                "FCGI_DATA_LENGTH": environ.get("FCGI_DATA_LENGTH"),
                "FCGI_DATA_LAST_MOD": environ.get("FCGI_DATA_LAST_MOD"),
                "data_bytes_received": len(data),
            }
        }
    return {}


def render_html(data: dict[str, Any]) -> str:
    """The report as a page: inline CSS only, narrow screens included, every value escaped."""
    sections = [
        ("warnings", "Warnings", _warnings_html(data["warnings"])),
        ("setup", f"Setting up {_server_name(data['server'])}", _setup_html(data)),
        *(
            (role, f"{role.title()} role", _table(data[role].items()))
            for role in ("authorizer", "filter")
            if role in data
        ),
        ("derived", "What fcgigw derived", _table(data["derived"].items())),
        ("params", f"Params as received ({len(data['params'])})", _table(data["params"])),
    ]
    nav = "".join(
        f'<li><a href="#{key}">{html.escape(title)}</a></li>' for key, title, _ in sections
    )
    body = "".join(
        f'<section id="{key}"><h2>{html.escape(title)}</h2>{content}</section>'
        for key, title, content in sections
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=icon href="data:,"><title>fcgigw diagnostics</title>'
        f"<style>{_STYLE}</style></head><body><main>"
        "<h1>fcgigw diagnostics</h1>"
        "<p class=lead>No application is configured, so fcgigw shows what the web server sent "
        "and what it made of it. Start fcgigw with <code>module:app</code> to serve yours.</p>"
        f"{_summary_html(data)}<nav><ul>{nav}</ul></nav>{body}"
        "<footer>The same report as JSON: add <code>?format=json</code> to this URL.</footer>"
        "</main></body></html>"
    )


def _server_name(server: str | None) -> str:
    return _SERVER_NAMES.get(server or "", "your web server")


#: How the page names each server detect_server() can return.
_SERVER_NAMES = {
    "nginx": "nginx",
    "apache-proxy-fcgi": "Apache mod_proxy_fcgi",
    "apache-fcgid": "Apache mod_fcgid",
    "apache": "Apache (an Authorizer call)",
    "lighttpd": "lighttpd",
    "h2o": "h2o",
    "caddy": "Caddy",
    "cgi-fcgi": "cgi-fcgi",
}


def _summary_html(data: dict[str, Any]) -> str:
    derived = data["derived"]
    script_name = derived["SCRIPT_NAME"]
    mounted = f"<code>{html.escape(script_name)}</code>" if script_name else "the root of the site"
    rows = (
        (
            "Web server",
            html.escape(_server_name(data["server"]) if data["server"] else "not recognised"),
        ),
        ("Role", html.escape(data["role"])),
        ("Mount point (SCRIPT_NAME)", mounted),
        ("Path the app sees", _value(derived["PATH_INFO"])),
        ("Scheme and host", f"{_value(derived['wsgi.url_scheme'])} {_value(derived['host'])}"),
    )
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return f"<dl class=summary>{items}</dl>"


def _warnings_html(found: list[str]) -> str:
    if not found:
        return "<p class=ok>None: nothing in this request looks misconfigured.</p>"
    return "<ul class=warnings>" + "".join(f"<li>{html.escape(w)}</li>" for w in found) + "</ul>"


def _setup_html(data: dict[str, Any]) -> str:
    """Where fcgigw takes the app to be mounted, then the README's part for this server."""
    mount = ""
    if not data["derived"]["SCRIPT_NAME"]:
        mount = (
            "<p>fcgigw takes the app to be mounted at the root of the site. A request does "
            "not always show where the web server mounts it: if that is under a sub-path, "
            "such as <code>/app</code>, start fcgigw with <code>--root-path /app</code>, or "
            "make the web server split the path, as below.</p>"
        )
    guidance = guidance_html(server_section(data["server"]))
    if guidance is None:
        guidance = (
            f"<p>fcgigw's README explains it, in <code>{html.escape(data['docs'])}</code>.</p>"
        )
    elif data["server"] is None:
        guidance = (
            "<p>The web server is not recognised. The README's advice for each:</p>" + guidance
        )
    return f"{mount}<div class=readme>{guidance}</div>"


def _table(pairs: Iterable[Sequence[Any]]) -> str:
    rows = "".join(
        f"<tr><th scope=row>{html.escape(str(key))}</th><td>{_value(value)}</td></tr>"
        for key, value in pairs
    )
    return f"<table>{rows}</table>"


def _value(value: Any) -> str:
    if value is None:
        return "<span class=muted>(not set)</span>"
    if value == "":
        return "<span class=muted>(empty)</span>"
    return f"<code>{html.escape(str(value))}</code>"


_STYLE = """
:root{color-scheme:light dark;--fg:#1d2330;--muted:#5b6475;--bg:#f5f6f8;--card:#fff;
--line:#dce0e7;--accent:#1f55c4;--warn:#fff5dc;--warn-edge:#d99a12;--ok:#e8f6ee;
--ok-edge:#2f9357;--code:#eef1f5;--stripe:#f8f9fb}
@media (prefers-color-scheme:dark){:root{--fg:#e3e6ed;--muted:#a2aaba;--bg:#14171d;
--card:#1c2029;--line:#303644;--accent:#8fb1ff;--warn:#3a2f12;--warn-edge:#c9962a;
--ok:#14301f;--ok-edge:#3a9d5d;--code:#272c37;--stripe:#20252f}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif}
main{max-width:60rem;margin:0 auto;padding:2rem 1.25rem 3rem}
h1{font-size:1.75rem;margin:0 0 .5rem;line-height:1.2}
h2{font-size:1.2rem;margin:2.25rem 0 .75rem;padding-bottom:.35rem;
border-bottom:1px solid var(--line)}
p,li,dd,summary{overflow-wrap:anywhere}
a{color:var(--accent)}
.lead{color:var(--muted);margin-top:0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
font-size:.875em}
code{background:var(--code);padding:.1em .3em;border-radius:4px;overflow-wrap:anywhere}
pre{background:var(--code);padding:.75rem 1rem;border-radius:6px;white-space:pre-wrap;
overflow-wrap:anywhere}
pre code{padding:0;background:none}
.muted{color:var(--muted);font-style:italic}
.summary{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.4rem 1.25rem;
margin:1.5rem 0 1rem;padding:1rem 1.25rem;background:var(--card);border:1px solid var(--line);
border-radius:8px}
.summary dt{color:var(--muted)}
.summary dd{margin:0;font-weight:600}
nav ul{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;margin:0;padding:0;list-style:none}
.warnings{margin:0;padding:0;list-style:none}
.warnings li,.ok{margin:.5rem 0;padding:.65rem 1rem;border-radius:6px;
background:var(--warn);border-left:4px solid var(--warn-edge)}
.ok{background:var(--ok);border-left-color:var(--ok-edge)}
table{width:100%;table-layout:fixed;border-collapse:collapse;background:var(--card);
border:1px solid var(--line);border-radius:8px}
th,td{padding:.45rem .75rem;text-align:left;vertical-align:top;border-top:1px solid var(--line);
overflow-wrap:anywhere}
th{width:35%;font-weight:600;font-size:.9em}
td code{padding:0;background:none}
tr:nth-child(even){background:var(--stripe)}
.readme details{margin:.5rem 0;padding:.5rem 1rem;background:var(--card);
border:1px solid var(--line);border-radius:6px}
.readme summary{cursor:pointer;font-weight:600}
.readme li{margin:.35rem 0}
.notes{font-size:.9em;color:var(--muted)}
footer{margin-top:2.5rem;color:var(--muted);font-size:.9em}
@media (max-width:40rem){main{padding:1.25rem .85rem 2rem}h1{font-size:1.45rem}
.summary{grid-template-columns:minmax(0,1fr);gap:0}.summary dd{margin-bottom:.5rem}
th,td{padding:.4rem .5rem}th{width:42%}}
"""


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The diagnostics WSGI app."""
    data = report(environ)
    if "format=json" in environ.get("QUERY_STRING", ""):
        body = json.dumps(data, indent=2).encode()
        content_type = "application/json"
    else:
        body = render_html(data).encode()
        content_type = "text/html; charset=utf-8"
    start_response(
        "403 Forbidden" if "authorizer" in data else "200 OK",
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    if environ.get("REQUEST_METHOD") == "HEAD":
        return [b""]
    return [body]
