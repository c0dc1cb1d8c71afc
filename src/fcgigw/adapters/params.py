"""The one params translator: FastCGI PARAMS to a PEP 3333 environ, and the pieces the ASGI
scope needs. Every SCRIPT_NAME / PATH_INFO / CONTENT_LENGTH / HTTPS / header rule of
web-servers.md §6 lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from ..digits import is_ascii_digits

Pairs = Sequence[tuple[bytes, bytes]]

# §6.3: CGI forbids these as HTTP_ variables (they duplicate CONTENT_TYPE/CONTENT_LENGTH), and
# HTTP_PROXY is httpoxy: a client header that libraries would take for the proxy setting.
DROPPED_HEADERS: Final = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_PROXY"})
#: The environ keys the WSGI adapter sets itself: a param of the same name (a web server
#: misconfigured) is dropped, so that it can never stand for them.
WSGI_OWN_KEYS: Final = frozenset(
    {
        "wsgi.version",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
        "wsgi.input_terminated",
        "wsgi.file_wrapper",
        "wsgi.url_scheme",
        "wsgi.input",
        "wsgi.errors",
        "fcgi.params",
        "fcgi.data",
        "FCGI_ROLE",
    }
)
_HTTPS_ON: Final = frozenset({"on", "1", "yes"})


def content_length(value: str | None) -> int | None:
    """CONTENT_LENGTH as a length, or None when unknown: absent, "" (nginx GET), "-1" (Caddy,
    chunked) or garbage all mean the body ends at STDIN's empty record (§6.2)."""
    if value is None or not is_ascii_digits(value):
        return None
    return int(value)


def url_scheme(https: str | None, request_scheme: str | None) -> str:
    """§6.4: https when HTTPS is on/1/yes (any case) or REQUEST_SCHEME says so (h2o sends no
    REQUEST_SCHEME; HTTPS is present only when on)."""
    if https is not None and https.lower() in _HTTPS_ON:
        return "https"
    return "https" if request_scheme == "https" else "http"


def split_script_path(
    script_name: str | None,
    path_info: str | None,
    root_path: str = "",
    *,
    mount_point: bool = False,
) -> tuple[str, str]:
    """SCRIPT_NAME and PATH_INFO per §6.1.

    With no PATH_INFO (stock nginx, Apache ProxyPass) SCRIPT_NAME holds the whole path: it
    becomes PATH_INFO. Then a configured mount prefix moves back into SCRIPT_NAME, on a segment
    boundary only (``/app`` takes ``/app`` and ``/app/x``, not ``/apple``). A split the server
    made itself (fcgid, lighttpd, nginx split, Caddy split) is kept as given, and so is a
    ``mount_point`` (see is_mount_point) unless a prefix is configured: that prefix says where
    the app is mounted. The path is never rebuilt from REQUEST_URI, which is raw and may be
    stale (mod_fcgid internal redirects).
    """
    prefix = normalise_root_path(root_path)
    if path_info is None:
        if mount_point and not prefix:
            return script_name or "", ""
        path_info = script_name or ""  # not one tuple assignment: mypyc 2.4 miscompiles it
        script_name = ""
    script_name = script_name or ""
    if prefix and not script_name and _under(path_info, prefix):
        path_info = path_info[len(prefix) :]
        script_name = prefix
    return script_name, path_info


def _fcgid_script(param: Callable[[str], str | None], filename: str, script_name: str) -> bool:
    """Apache mod_fcgid's ``ScriptAlias /app RUN/app.fcgi``: SCRIPT_FILENAME is the script
    itself, a real file (web-servers.md §1), where mod_proxy_fcgi sends ``proxy:fcgi://...``
    or, with ProxyFCGIBackendType GENERIC, the path after the mount (a tail of SCRIPT_NAME)."""
    software = param("SERVER_SOFTWARE") or ""
    if not software.startswith("Apache") or filename.startswith("proxy:"):
        return False
    return not script_name.endswith(filename)


def is_mount_point(param: Callable[[str], str | None]) -> bool:
    """True when SCRIPT_NAME came without PATH_INFO because the request is for exactly the
    mount point, not because SCRIPT_NAME is the whole path (``param`` gets a param's value).

    A server that splits the path into SCRIPT_NAME and PATH_INFO sends no PATH_INFO when
    nothing is left after the mount point: HAProxy's ``path-info ^(/app)(/.*)?$`` and
    lighttpd's ``"/app"`` prefix, for ``GET /app`` (web-servers.md §7; HAProxy 2.6 and
    lighttpd 1.4.69 seen doing it). Both map SCRIPT_NAME to a file under the document root,
    as CGI does: SCRIPT_FILENAME is DOCUMENT_ROOT + SCRIPT_NAME; mod_fcgid's ScriptAlias
    names its script instead (_fcgid_script). The whole-path senders do not:
    nginx sends DOCUMENT_URI (= SCRIPT_NAME, §1), Apache ProxyPass a ``proxy:fcgi://``
    SCRIPT_FILENAME (its GENERIC type: the path after the mount), cgi-fcgi neither file.
    REQUEST_URI must name SCRIPT_NAME itself: the request left nothing for PATH_INFO.

    HAProxy without ``path-info`` sends every path this way too, and nothing in the params
    tells it apart, so it needs ``path-info ^()(/.*)$`` at the root (README), or --root-path,
    which takes precedence (split_script_path).
    """
    if param("PATH_INFO") is not None or param("DOCUMENT_URI") is not None:
        return False
    script_name = param("SCRIPT_NAME")
    if not script_name or script_name.endswith("/"):
        return False
    filename, root = param("SCRIPT_FILENAME"), param("DOCUMENT_ROOT")
    if filename is None or root is None:
        return False
    under_root = filename.endswith(script_name) and (
        filename[: -len(script_name)].rstrip("/") == root.rstrip("/")
    )
    if not under_root and not _fcgid_script(param, filename, script_name):
        return False
    request_uri = param("REQUEST_URI")
    if request_uri is None:
        return False
    target = request_uri.partition("?")[0].encode("latin-1")
    return unquote_to_bytes(target) == script_name.encode("latin-1")


def normalise_root_path(root_path: str) -> str:
    """``/app/`` → ``/app``; ``/`` and ``""`` mean no prefix."""
    return root_path.rstrip("/")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


#: What the translators need of a param name, worked out once per name: the name itself
#: (kept: its hash is computed once), as a str (the environ's key), its kind, its ASGI
#: header name (b"" unless a header that ASGI keeps), and its place in ScopeParams (-1:
#: the scope does not read it).
_Name = tuple[bytes, str, int, bytes, int]

#: The params the ASGI scope is built from, in the order of the list asgi_params returns
#: (the first six, together, say which virtual host: asgi.py caches what follows from them).
SCOPE_PARAMS: Final = (
    b"SERVER_PROTOCOL",
    b"HTTPS",
    b"REQUEST_SCHEME",
    b"SERVER_ADDR",
    b"SERVER_NAME",
    b"SERVER_PORT",
    b"REQUEST_METHOD",
    b"REQUEST_URI",
    b"PATH_INFO",
    b"SCRIPT_NAME",
    b"QUERY_STRING",
    b"REMOTE_ADDR",
    b"REMOTE_PORT",
    b"CONTENT_LENGTH",
    b"CONTENT_TYPE",
    b"DOCUMENT_URI",
)
#: Each of those params' value (the last of a repeat), or None when it did not come.
ScopeParams = list[bytes | None]
_SCOPE_PLACES: Final = {name: place for place, name in enumerate(SCOPE_PARAMS)}
_SCOPE_PARAMS_COUNT: Final = len(SCOPE_PARAMS)
_CONTENT_LENGTH_AT: Final = SCOPE_PARAMS.index(b"CONTENT_LENGTH")
_CONTENT_TYPE_AT: Final = SCOPE_PARAMS.index(b"CONTENT_TYPE")
_PLAIN: Final = 0
_HEADER: Final = 1
_DROPPED: Final = 2
#: Names seen before: the same twenty-odd come with every request. Bounded: header names
#: are the client's choice.
_NAMES: Final[dict[bytes, _Name]] = {}
_NAMES_MAX: Final = 1024
#: The last params' names by position: a web server sends the same names in the same order
#: request after request, and comparing two names costs a tenth of hashing one (each
#: request's names are new objects). Bounded like _NAMES; the threads share it, an entry is
#: one tuple replaced whole, and it is only used when its name is equal.
_LAST_NAMES: Final[list[_Name]] = []


def _new_name(raw_name: bytes) -> _Name:
    name = raw_name.decode("latin-1")
    kind = _PLAIN
    asgi_name = b""
    if name in WSGI_OWN_KEYS:
        kind = _DROPPED
    elif name[:5] == "HTTP_":
        kind = _DROPPED if name in DROPPED_HEADERS else _HEADER
        if kind == _HEADER:
            asgi_name = header_name(raw_name)
    place = _SCOPE_PLACES.get(raw_name, -1) if kind == _PLAIN else -1
    known = (raw_name, name, kind, asgi_name, place)
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[raw_name] = known
    return known


def _known_name(position: int, raw_name: bytes) -> _Name:
    """The name at ``position`` in a request's params."""
    last_names = _LAST_NAMES
    remembered = position < len(last_names)
    if remembered:
        known = last_names[position]
        if known[0] == raw_name:
            return known
    known = _NAMES.get(raw_name) or _new_name(raw_name)
    if remembered:
        last_names[position] = known
    elif position < _NAMES_MAX:
        last_names.append(known)
    return known


#: The last params' values by position, each with its str: most of them (the server's name,
#: address and software, the document root, the client's Host and User-Agent...) come again
#: with every request, and comparing two values costs less than decoding one into a new
#: str. Bounded like _LAST_NAMES; an entry is one tuple replaced whole, used only when its
#: value is equal (so threads that race on it cost a miss, never a wrong value).
_LAST_VALUES: Final[list[tuple[bytes, str]]] = []


def _decoded_value(position: int, raw_value: bytes) -> str:
    """The param value at ``position`` as latin-1 str (PEP 3333)."""
    last_values = _LAST_VALUES
    if position < len(last_values):
        known = last_values[position]
        if known[0] == raw_value:
            return known[1]
        value = raw_value.decode("latin-1")
        last_values[position] = (raw_value, value)
        return value
    value = raw_value.decode("latin-1")
    if position < _NAMES_MAX:
        last_values.append((raw_value, value))
    return value


def _as_tuple(params: Pairs) -> tuple[tuple[bytes, bytes], ...]:
    """The pairs as the tuple they come as from a request (another sequence is copied): the
    compiled build then walks them by index, not through the iterator protocol."""
    return params if type(params) is tuple else tuple(params)


#: The last request's environ before the CGI fix-ups below, with what it was made from:
#: (base, the raw names in order, their str names, the dict). A request with the same names
#: in the same order -- a web server sends the same ones, request after request -- starts
#: from a copy of it: a dict of its final size at once, each param a replaced value, where
#: a copy of ``base`` grows by some twenty insertions and resizes. Only made from params
#: with no name repeated or dropped, so that every key it holds is set again. One tuple
#: replaced whole: threads that race on it cost a miss, never a wrong key.
_EnvironShape = tuple[dict[str, Any] | None, tuple[bytes, ...], tuple[str, ...], dict[str, Any]]
_LAST_ENVIRON: Final[list[_EnvironShape]] = []


def _same_names(pairs: tuple[tuple[bytes, bytes], ...], names: tuple[bytes, ...]) -> bool:
    if len(pairs) != len(names):
        return False
    for position in range(len(names)):  # noqa: SIM110 (all() would be a generator, compiled)
        if pairs[position][0] != names[position]:
            return False
    return True


def wsgi_environ(
    params: Pairs, root_path: str = "", base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The CGI part of a PEP 3333 environ (latin-1 str values) plus ``wsgi.url_scheme``,
    added to a copy of ``base`` (the adapter's constants: copying them first costs less than
    adding them after, which resizes the dict once more)."""
    pairs = _as_tuple(params)
    shape = _LAST_ENVIRON[0] if _LAST_ENVIRON else None
    if shape is not None and shape[0] is base and _same_names(pairs, shape[1]):
        environ = shape[3].copy()
        names = shape[2]
        for position in range(len(pairs)):
            environ[names[position]] = _decoded_value(position, pairs[position][1])
    else:
        environ = _params_environ(pairs, base)
    path_info = environ.get("PATH_INFO")
    environ["SCRIPT_NAME"], environ["PATH_INFO"] = split_script_path(
        environ.get("SCRIPT_NAME"),
        path_info,
        root_path,
        mount_point=path_info is None and is_mount_point(environ.get),
    )
    _normalise_body_headers(environ)
    scheme = url_scheme(environ.get("HTTPS"), environ.get("REQUEST_SCHEME"))
    environ["wsgi.url_scheme"] = scheme
    _fill_required(environ, scheme)
    return environ


def _params_environ(
    pairs: tuple[tuple[bytes, bytes], ...], base: dict[str, Any] | None
) -> dict[str, Any]:
    """A copy of ``base`` with the params added, each name once; remembered in _LAST_ENVIRON
    if no name was repeated or dropped."""
    environ: dict[str, Any] = base.copy() if base is not None else {}
    names: list[str] = []
    for position in range(len(pairs)):
        raw_name, raw_value = pairs[position]
        _, name, kind, _, _ = _known_name(position, raw_name)
        value = _decoded_value(position, raw_value)
        if kind:
            if kind == _DROPPED:
                continue
            previous = environ.get(name)
            if previous is not None:
                # §6.3: nginx and h2o repeat a repeated header as separate params.
                value = previous + ("; " if name == "HTTP_COOKIE" else ", ") + value
        # §6.3: other repeats come from overlapping server config: the last one wins.
        environ[name] = value
        names.append(name)
    base_size = len(base) if base is not None else 0
    if len(names) == len(pairs) and len(environ) == base_size + len(names):
        raw_names = tuple([pair[0] for pair in pairs])
        _LAST_ENVIRON[:] = [(base, raw_names, tuple(names), environ.copy())]
    return environ


def _normalise_body_headers(environ: dict[str, Any]) -> None:
    length = content_length(environ.get("CONTENT_LENGTH"))
    if length is None:
        environ.pop("CONTENT_LENGTH", None)
    else:
        environ["CONTENT_LENGTH"] = str(length)
        # §6.2: the body is already de-chunked; a known length makes the TE header a lie.
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    if not environ.get("CONTENT_TYPE"):
        environ.pop("CONTENT_TYPE", None)


def _fill_required(environ: dict[str, Any], scheme: str) -> None:
    """PEP 3333 requires these; cgi-fcgi and odd configs may leave some out. SERVER_NAME
    loses any port: HAProxy sends the Host header there verbatim (web-servers.md §7)."""
    environ.setdefault("REQUEST_METHOD", "GET")
    environ.setdefault("QUERY_STRING", "")
    environ.setdefault("SERVER_PROTOCOL", "HTTP/1.0")
    host, port = split_host(environ.get("HTTP_HOST", ""))
    name, name_port = split_host(environ.get("SERVER_NAME", ""))
    environ["SERVER_NAME"] = name or host or "localhost"
    if not environ.get("SERVER_PORT"):
        port = port or name_port
        environ["SERVER_PORT"] = port or ("443" if scheme == "https" else "80")


def split_host(host: str) -> tuple[str, str]:
    """A Host header or SERVER_NAME as RFC 3875 §4.1.14's server-name (no port) and the port:
    ``example.test:8080`` → (``example.test``, ``8080``), ``[::1]:80`` → (``[::1]``, ``80``);
    no port → (host, ""). An IPv6 literal keeps its brackets, as that grammar writes it: PEP
    3333's URL reconstruction (wsgiref, Django) appends ``":" + SERVER_PORT`` to it."""
    name, colon, port = host.rpartition(":")
    # A colon in what is left is a bare IPv6 address, which has no port ("::1").
    if colon and (name.endswith("]") or ":" not in name) and (not port or is_ascii_digits(port)):
        return name, port
    return host, ""


# -- pieces of the ASGI scope (used by the ASGI adapter) -------------------------------------


def header_name(param_name: bytes) -> bytes:
    """``HTTP_X_FORWARDED_FOR`` → ``x-forwarded-for`` (§6.3: ``_`` and ``-`` are one)."""
    return param_name[5:].lower().replace(b"_", b"-")


def asgi_params(params: Pairs) -> tuple[ScopeParams, list[tuple[bytes, bytes]]]:
    """The values of the SCOPE_PARAMS (the last of a repeat; the other params are not
    headers, and the scope has no use for them), and the request headers for ASGI:
    lower-case names, repeats kept as separate entries, the body headers taken from
    CONTENT_TYPE/CONTENT_LENGTH, duplicates and httpoxy dropped. One pass: the scope needs
    both, for every request. A list by place, not a dict by name: storing a value costs a
    tenth of a dict's insertion, and most params are never looked up."""
    scope_params: ScopeParams = [None] * _SCOPE_PARAMS_COUNT
    headers: list[tuple[bytes, bytes]] = []
    pairs = _as_tuple(params)
    for position in range(len(pairs)):
        raw_name, value = pairs[position]
        _, _, _, asgi_name, place = _known_name(position, raw_name)
        if place >= 0:
            scope_params[place] = value
        elif asgi_name:
            headers.append((asgi_name, value))
    length_text = scope_params[_CONTENT_LENGTH_AT]
    if length_text:
        length = content_length(length_text.decode("latin-1"))
        if length is not None:
            headers = [h for h in headers if h[0] != b"transfer-encoding"]
            headers.append((b"content-length", str(length).encode()))
    content_type = scope_params[_CONTENT_TYPE_AT]
    if content_type:
        headers.append((b"content-type", content_type))
    return scope_params, headers


def http_version(server_protocol: str | None) -> str:
    """ASGI http_version from SERVER_PROTOCOL: "HTTP/2.0" and "HTTP/2" → "2" (§6.4)."""
    version = (server_protocol or "HTTP/1.1").partition("/")[2]
    if version in ("2", "2.0"):
        return "2"
    if version in ("3", "3.0"):
        return "3"
    return "1.0" if version == "1.0" else "1.1"


def asgi_path(path: str) -> str:
    """A WSGI-style latin-1 path as the ASGI str: UTF-8 when it is UTF-8 (servers pass the
    decoded bytes raw, §6.1), else latin-1 so no byte is lost and no surrogate escapes."""
    raw = path.encode("latin-1")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return path


def raw_path(request_uri: str | None, full_path: str) -> bytes | None:
    """ASGI raw_path: REQUEST_URI before "?", only when it decodes to the path the server gave
    (it is stale after mod_fcgid redirects and cut by lighttpd strip-request-uri, §6.1)."""
    if not request_uri:
        return None
    raw = request_uri.partition("?")[0].encode("latin-1")
    return raw if unquote_to_bytes(raw) == full_path.encode("latin-1") else None


def address_pair(host: str | None, port: str | None) -> tuple[str, int] | None:
    """ASGI client/server tuples: None when the server did not say (cgi-fcgi sends neither)."""
    if not host or port is None or not is_ascii_digits(port):
        return None
    return host, int(port)


def server_pair(address: str | None, name: str | None, port: str | None) -> tuple[str, int] | None:
    """ASGI ``server``: (SERVER_ADDR or SERVER_NAME, SERVER_PORT) (web-servers.md §6.4). The
    host is written as a socket address gives it, as uvicorn and hypercorn fill it from
    getsockname(): no port (HAProxy's SERVER_NAME has one, §7), and an IPv6 address without
    brackets (Starlette adds them back when it builds a URL)."""
    host = address or split_host(name or "")[0]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return address_pair(host, port)
