"""The one validated Config: CLI flags, FCGIGW_* variables and the README table come from it.

Each field's metadata carries its help text; cli.py turns the fields into options, so a
setting cannot exist in one place and not the other (a test keeps the README in step).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .address import Address, parse_address
from .protocol import ProtocolSettings, Role

ROLE_NAMES = {role.name.lower(): role for role in Role}
INTERFACES = ("auto", "wsgi", "asgi")
LIFESPAN_MODES = ("auto", "on", "off")
LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: The settings that take one of a few words.
CHOICES = {
    "interface": INTERFACES,
    "lifespan": LIFESPAN_MODES,
    "loop": LOOPS,
    "log_level": LOG_LEVELS,
}


def _setting(help_text: str, *, default: Any) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class Config:
    """Every fcgigw setting, validated once; limits carry their unit in their name."""

    app: str | None = field(
        default=None,
        metadata={"help": "module:attribute of the WSGI app; none serves the diagnostics page"},
    )
    bind: tuple[str, ...] = _setting(
        "address to listen on: HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N (repeatable). "
        "Without it: fd 0 when a web server started fcgigw on a listening socket "
        "(FastCGI §2.2), else systemd's LISTEN_FDS, else one request as a CGI program "
        "when started as one, else 127.0.0.1:9000",
        default=(),
    )
    interface: str = _setting("application interface: auto, wsgi or asgi", default="auto")
    lifespan: str = _setting(
        "ASGI lifespan: auto (used when the app supports it), on (required) or off",
        default="auto",
    )
    loop: str = _setting(
        "ASGI event loop: auto (uvloop when installed), asyncio or uvloop", default="auto"
    )
    factory: bool = _setting("APP names a callable returning the application", default=False)
    threads: int = _setting(
        "threads for WSGI requests; extra ones serve only while others wait on I/O", default=8
    )
    workers: int = _setting(
        "worker processes under a supervisor that replaces dead ones and reloads on SIGHUP; "
        "0 serves in this process",
        default=0,
    )
    max_requests: int = _setting(
        "requests a process serves before it is replaced (0: no limit; without workers the "
        "process exits, as mod_fcgid expects)",
        default=0,
    )
    max_requests_jitter: int = _setting(
        "random extra requests (0..N) added to max_requests per process, so workers do not "
        "all restart at once",
        default=0,
    )
    graceful_timeout_seconds: int = _setting(
        "seconds in-flight requests get to finish after SIGTERM or a reload", default=30
    )
    pid_file: str = _setting("file to write the main process id to (removed on exit)", default="")
    root_path: str = _setting(
        "mount prefix moved from PATH_INFO to SCRIPT_NAME when the server cannot say it",
        default="",
    )
    socket_mode: int = _setting(
        "permissions of a Unix socket fcgigw creates, octal (php-fpm's listen.mode default)",
        default=0o660,
    )
    socket_user: str = _setting(
        "owner of a Unix socket fcgigw creates: a user name or uid (needs root)", default=""
    )
    socket_group: str = _setting(
        "group of a Unix socket fcgigw creates: a group name or gid (e.g. the web server's)",
        default="",
    )
    user: str = _setting(
        "user the workers run as, a name or uid: fcgigw binds as root, then each worker (or "
        "the one process, without workers) switches to it before importing the app",
        default="",
    )
    group: str = _setting(
        "group the workers run as, a name or gid (default: the --user's primary group)",
        default="",
    )
    allow_root: bool = _setting(
        "let workers (--workers, pools) run as root; refused without it when fcgigw starts as "
        "root and no --user is given (php-fpm's --allow-to-run-as-root)",
        default=False,
    )
    chdir: str = _setting(
        "directory the app is imported from (put on sys.path), entered after --user applies",
        default="",
    )
    allow_from: tuple[str, ...] = _setting(
        "web server addresses or networks allowed to connect over TCP, comma-separated "
        "(defaults to FCGI_WEB_SERVER_ADDRS, FastCGI §3.2)",
        default=(),
    )
    roles: frozenset[Role] = _setting(
        "FastCGI roles served: responder,authorizer,filter", default=frozenset(Role)
    )
    log_level: str = _setting("log level: critical, error, warning, info, debug", default="info")
    access_log: bool = _setting("log one line per request", default=False)
    max_params_bytes: int = _setting(
        "bytes of one request's PARAMS (Apache allows ~800 KiB of headers)", default=1024 * 1024
    )
    max_params_count: int = _setting("params in one request", default=1000)
    max_connections: int = _setting(
        "connections served at once by this process (reported as FCGI_MAX_CONNS)", default=1000
    )
    max_concurrent_requests_per_connection: int = _setting(
        "requests multiplexed on one connection before FCGI_OVERLOADED", default=100
    )
    multiplex_connections: bool = _setting(
        "accept several requests at once on one connection (FCGI_MPXS_CONNS)", default=True
    )
    header_timeout_seconds: int = _setting(
        "seconds a connection may take to send a request's whole PARAMS (slow or silent "
        "peers); 0 waits forever",
        default=30,
    )
    idle_timeout_seconds: int = _setting(
        "seconds an idle kept-alive connection stays open; 0 keeps it until the web server "
        "closes it",
        default=300,
    )
    request_timeout_seconds: int = _setting(
        "seconds a request may run before fcgigw answers 504 for it and logs it; under "
        "--workers its worker is then replaced (a new one starts first); 0 is no limit",
        default=0,
    )
    body_stall_timeout_seconds: int = _setting(
        "seconds a request body may stay silent before fcgigw stops waiting for the rest, "
        "where a paused upload looks like one that will not go on: once the app has "
        "answered (every server but nginx goes on sending the body), and after the web "
        "server ended it short of its CONTENT_LENGTH (its client left: the app reads an "
        "error); at least 1",
        default=10,
    )
    max_request_body_bytes: int = _setting(
        "request body bytes accepted; a bigger body gets 413 without calling the app (0: no limit)",
        default=0,
    )
    request_body_memory_bytes: int = _setting(
        "request body bytes held in memory per request before spilling to a temporary file",
        default=1024 * 1024,
    )
    status_path: str = _setting(
        "URL path fcgigw answers itself with the pool's status (text like php-fpm's; ?json, "
        "?openmetrics), before the app; empty: off",
        default="",
    )
    ping_path: str = _setting(
        "URL path fcgigw answers itself with 'pong', before the app; empty: off", default=""
    )
    slow_request_timeout: int = _setting(
        "seconds after which a request still running is logged once, with the Python stack "
        "where the app waits, and counted as slow (php-fpm's request_slowlog_timeout); 0: off",
        default=0,
    )
    slow_log: str = _setting("file for the slow log; empty: the error log", default="")
    workers_min: int = _setting(
        "fewest worker processes when --workers-max scales the pool; 0 is on demand: no "
        "worker runs until a connection arrives",
        default=1,
    )
    workers_max: int = _setting(
        "most worker processes: the pool scales between --workers-min and this, starting "
        "one more when all are busy (--workers, if given, is where it starts); 0: a fixed "
        "--workers",
        default=0,
    )
    worker_idle_timeout: int = _setting(
        "seconds a worker may stay idle before it stops, while more than --workers-min run",
        default=10,
    )
    max_worker_memory: int = _setting(
        "MiB of RSS after which a worker is replaced (a new one starts first, the old one "
        "finishes its requests); 0: no limit. Needs --workers",
        default=0,
    )

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if self.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
            raise ValueError("loop: uvloop is not installed (pip install 'fcgigw[fast]')")
        for name in (
            "threads",
            "max_params_bytes",
            "max_params_count",
            "max_connections",
            "max_concurrent_requests_per_connection",
            "request_body_memory_bytes",
            "body_stall_timeout_seconds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "workers",
            "max_requests",
            "max_requests_jitter",
            "graceful_timeout_seconds",
            "header_timeout_seconds",
            "idle_timeout_seconds",
            "request_timeout_seconds",
            "max_request_body_bytes",
            "slow_request_timeout",
            "max_worker_memory",
            "workers_min",
            "workers_max",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.socket_mode <= 0o777:
            raise ValueError("socket_mode must be an octal mode between 000 and 777")
        if not self.roles:
            raise ValueError("roles needs at least one role")
        self.addresses  # parse now, so a bad --bind is reported before anything starts  # noqa: B018
        for name in ("root_path", "chdir"):
            if getattr(self, name) and not getattr(self, name).startswith("/"):
                raise ValueError(f"{name} must start with '/'")
        self._check_operations()

    def _check_operations(self) -> None:
        """The settings of the status page, slow log, recycling and process manager."""
        for name in ("status_path", "ping_path"):
            if getattr(self, name) and not getattr(self, name).startswith("/"):
                raise ValueError(f"{name} must start with '/'")
        if self.status_path and self.status_path == self.ping_path:
            raise ValueError("status_path and ping_path must differ")
        if self.worker_idle_timeout < 1:
            raise ValueError("worker_idle_timeout must be at least 1")
        if not self.workers_max:
            if self.workers_min != 1:
                raise ValueError("workers_min needs workers_max (the pool's upper bound)")
            return
        if self.workers_min > self.workers_max:
            raise ValueError("workers_min must not be above workers_max")
        if self.workers and not self.workers_min <= self.workers <= self.workers_max:
            raise ValueError("workers (where the pool starts) must be within workers_min..max")

    @property
    def supervised(self) -> bool:
        """Worker processes under a supervisor (--workers, or a scaling pool)."""
        return bool(self.workers or self.workers_max)

    @property
    def addresses(self) -> tuple[Address, ...]:
        """The parsed bind addresses."""
        return tuple(parse_address(text, allow_fd=True) for text in self.bind)

    @functools.cached_property
    def protocol_settings(self) -> ProtocolSettings:
        """The protocol core's view of these settings (and the GET_VALUES answers, §4.1)."""
        return ProtocolSettings(
            max_params_bytes=self.max_params_bytes,
            max_params_count=self.max_params_count,
            max_concurrent_requests_per_connection=self.max_concurrent_requests_per_connection,
            multiplex_connections=self.multiplex_connections,
            roles=self.roles,
            max_connections=self.max_connections,
            max_requests=self.threads,
        )


def setting_fields() -> list[Any]:
    """The Config fields, in order (for the CLI and the README table)."""
    return list(fields(Config))


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_roles(text: str) -> frozenset[Role]:
    try:
        return frozenset(ROLE_NAMES[part.strip().lower()] for part in text.split(","))
    except KeyError:
        raise ValueError("one or more of responder,authorizer,filter") from None


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("a boolean (true or false)")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("a whole number") from None


def _parse_mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ValueError("an octal mode such as 660") from None


_PARSERS: dict[str, Any] = {
    "bind": _parse_list,
    "allow_from": _parse_list,
    "roles": _parse_roles,
    "socket_mode": _parse_mode,
}


def option_name(name: str) -> str:
    """The command-line option of setting ``name``: ``threads`` → ``--threads``."""
    return "--" + name.replace("_", "-")


def parse_value(name: str, text: str, *, given_as: str = "") -> Any:
    """Turn the text of an option or FCGIGW_* variable into the field's value. A ValueError
    says what ``given_as`` (the option or variable the text came from; the setting's name
    by default) wants, and what it got."""
    try:
        return _parser_for(name)(text)
    except ValueError as error:
        raise ValueError(f"{given_as or name} wants {error}, got {text!r}") from None


def _parser_for(name: str) -> Any:
    parser = _PARSERS.get(name)
    if parser is not None:
        return parser
    default = Config.__dataclass_fields__[name].default
    if isinstance(default, bool):
        return _parse_bool
    return _parse_int if isinstance(default, int) else str


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings given as FCGIGW_<NAME> variables, plus FCGI_WEB_SERVER_ADDRS (§3.2)."""
    values: dict[str, Any] = {}
    addrs = environ.get("FCGI_WEB_SERVER_ADDRS", "").strip()
    if addrs:
        values["allow_from"] = parse_value("allow_from", addrs, given_as="FCGI_WEB_SERVER_ADDRS")
    for item in setting_fields():
        variable = "FCGIGW_" + item.name.upper()
        text = environ.get(variable)
        if text is not None:
            values[item.name] = parse_value(item.name, text, given_as=variable)
    return values


def load_config(overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Config from FCGIGW_* variables, then explicit settings on top."""
    values = from_environment(os.environ if environ is None else environ)
    values.update(overrides)
    return Config(**values)


def _default_text(value: Any) -> str:
    if isinstance(value, frozenset):
        return ",".join(sorted(role.name.lower() for role in value))
    if isinstance(value, tuple):
        return ",".join(value) or "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "(none)"
    return str(value)


def settings_markdown() -> str:
    """The README's settings table, made from the fields (tests/test_readme.py compares)."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for item in setting_fields():
        option = "APP" if item.name == "app" else option_name(item.name)
        default = (
            oct(item.default)[2:] if item.name == "socket_mode" else _default_text(item.default)
        )
        rows.append(
            f"| `{option}` | `FCGIGW_{item.name.upper()}` | `{default}` | {item.metadata['help']} |"
        )
    return "\n".join(rows)


def update_readme(path: str) -> None:
    """Rewrite the settings table in the README at ``path`` (python -m fcgigw.config README.md)."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    start = text.index(README_TABLE_START) + len(README_TABLE_START)
    end = text.index(README_TABLE_END)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text[:start] + settings_markdown() + "\n" + text[end:])


README_TABLE_START = (
    "<!-- settings-table: generated from fcgigw.config.Config; "
    "tests/test_readme.py keeps it in step -->\n"
)
README_TABLE_END = "<!-- end settings-table -->"

if __name__ == "__main__":
    import sys

    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
