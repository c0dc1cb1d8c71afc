"""``python -m fcgigw [OPTIONS] [APP]``: argv and FCGIGW_* variables into a Config, then serve."""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from . import version_line
from .adapters.app_loader import AppLoadError, as_asgi3, detect_interface, import_app
from .adapters.lifespan import LifespanFailure
from .config import Config, load_config, option_name, parse_value, setting_fields
from .config_file import ConfigFile, Pool, read_config_file, summary
from .server.aio import AsyncServer
from .server.cgi import serve_cgi, started_as_cgi
from .server.listeners import FCGI_LISTENSOCK_FILENO, BindError, describe, open_listeners
from .server.logs import configure_logging
from .server.malloc import limit_malloc_arenas
from .server.monitor import standalone_seat
from .server.pidfile import pid_file
from .server.pools import PoolMaster
from .server.privileges import apply_environment, become_app_process, check_root, resolve
from .server.scoreboard import Seat
from .server.sd_notify import Notifier
from .server.server import Server
from .server.slowlog import open_slow_log
from .server.status import StatusPages, with_status_asgi, with_status_wsgi
from .server.stdio import reopen_missing_stdio
from .server.supervisor import Supervisor

#: Exit codes, named so a supervisor can tell "fix your config" from a crash.
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_APP_LOAD = 3
EXIT_BIND = 4
EXIT_LIFESPAN = 5

logger = logging.getLogger("fcgigw")


def build_parser() -> argparse.ArgumentParser:
    """One option per Config field; each can also come from FCGIGW_<NAME>."""
    parser = argparse.ArgumentParser(
        prog="fcgigw",
        description="Serve a WSGI application to a web server over FastCGI.",
        epilog="Every option can also be set as FCGIGW_<NAME>, e.g. FCGIGW_BIND=unix:/tmp/a.sock",
    )
    for item in setting_fields():
        help_text = item.metadata["help"]
        if item.name == "app":
            parser.add_argument("app", nargs="?", metavar="APP", help=help_text)
            continue
        flag = option_name(item.name)
        if isinstance(item.default, bool):
            parser.add_argument(
                flag, dest=item.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif item.name in ("bind", "allow_from"):
            parser.add_argument(
                flag, dest=item.name, action="append", metavar="ADDR", help=help_text
            )
        else:
            parser.add_argument(flag, dest=item.name, metavar=item.name.upper(), help=help_text)
    parser.add_argument("--version", action="version", version=version_line())
    files = parser.add_argument_group("configuration files")
    files.add_argument(
        "--config",
        dest=CONFIG_FILE,
        metavar="FILE",
        help="read settings from a TOML file (keys: the long option names); its [pool.NAME] "
        "tables are pools run by one master process; the command line and FCGIGW_* "
        "variables override the file",
    )
    files.add_argument(
        "--check-config",
        dest=CHECK_CONFIG,
        metavar="FILE",
        help="validate FILE without starting anything: a line per pool, exit 0 (or 2)",
    )
    return parser


#: The options that name files rather than settings (they are not Config fields).
CONFIG_FILE, CHECK_CONFIG = "config_file", "check_config"


def settings_from(namespace: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (the options that were used)."""
    overrides: dict[str, Any] = {}
    for name, value in vars(namespace).items():
        if value is None or name in (CONFIG_FILE, CHECK_CONFIG):
            continue
        option = option_name(name)
        if name == "app" or isinstance(value, bool):
            overrides[name] = value
        elif isinstance(value, list):
            overrides[name] = tuple(
                part for text in value for part in parse_value(name, text, given_as=option)
            )
        else:
            overrides[name] = parse_value(name, value, given_as=option)
    return overrides


def config_from_args(argv: Sequence[str], environ: dict[str, str] | None = None) -> Config:
    """Parse argv (on top of the environment) into a validated Config."""
    return load_config(settings_from(build_parser().parse_args(argv)), environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fcgigw`` command."""
    reopen_missing_stdio()  # a web server may start us with fds 1 and 2 closed (§2.2)
    limit_malloc_arenas()  # before any thread exists
    exit_on_early_signals()
    notifier = Notifier.from_environment()  # before anything forks or starts the app
    namespace = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = settings_from(namespace)
        if namespace.check_config:
            return check_config(namespace.check_config, settings)
        loaded = None
        if namespace.config_file:
            loaded = read_config_file(namespace.config_file, settings, os.environ)
        config = loaded.main if loaded else load_config(settings)
        if not (loaded and loaded.pools):
            check_privileges(config)
        start_logging(config)
    except ValueError as error:
        for line in str(error).splitlines():
            print(f"fcgigw: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if loaded and loaded.pools:
        return run_pools(loaded, namespace.config_file, settings, notifier)
    if loaded:
        apply_environment(loaded.env)
    return serve_config(config, notifier)


def serve_config(config: Config, notifier: Notifier | None = None) -> int:
    """One server: as a CGI program, under a supervisor (--workers), or in this process.
    ``notifier``: systemd's, told when it serves (sd_notify.py)."""
    notifier = notifier or Notifier()
    if started_as_cgi(config, os.environ):
        return serve_as_cgi(config)
    if config.supervised:
        return supervise(config, notifier)
    try:
        listeners = open_listeners(config)
    except BindError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_BIND

    def ready() -> None:
        notifier.ready("serving on " + ", ".join(describe(sock) for sock in listeners))

    # A web server that spawned fcgigw on fd 0 owns its life: a hang-up of its process group
    # (mod_fcgid's is Apache's) still ends it.
    spawned = any(sock.fileno() == FCGI_LISTENSOCK_FILENO for sock in listeners)
    ignore_reload_signals(hang_up=not spawned)
    with pid_file(config.pid_file):
        return run_worker(config, listeners, ready)


def check_privileges(config: Config) -> None:
    """--user and --group exist and can be switched to; workers do not run as root by
    accident (ValueError: one line for the operator)."""
    resolve(config)
    if config.supervised and not started_as_cgi(config, os.environ):
        check_root(config)


def check_config(path: str, settings: dict[str, Any]) -> int:
    """--check-config FILE: a line per pool on stdout and exit 0, or the errors and exit 2."""
    loaded = read_config_file(path, settings, os.environ)
    for line in summary(loaded):
        print(line)
    return EXIT_OK


def run_pools(loaded: ConfigFile, path: str, settings: dict[str, Any], notifier: Notifier) -> int:
    """A file of pools: the master binds every pool's sockets and runs one child per pool."""

    def read_file() -> ConfigFile:
        return read_config_file(path, settings, os.environ)

    try:
        master = PoolMaster(loaded, read_file, run_pool)
    except BindError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_BIND
    master.readiness.notifier = notifier
    with pid_file(loaded.main.pid_file):
        return master.run()


def run_pool(pool: Pool, listeners: list[socket.socket], on_ready: Callable[[], None]) -> int:
    """One pool, in the child the master forked: its supervisor, or its one process."""
    config = pool.config
    configure_logging(config.log_level, f"pool {pool.name}")
    if not config.supervised:
        return run_worker(config, listeners, on_ready)

    def worker(
        listeners: list[socket.socket], worker_ready: Callable[[], None], seat: Seat | None
    ) -> int:
        def ready() -> None:
            worker_ready()  # the pool's supervisor, then the master (once is enough for it)
            on_ready()

        return run_worker(config, listeners, ready, seat)

    return Supervisor(config, listeners, worker).run()


def serve_as_cgi(config: Config) -> int:
    """One request, as mod_cgi or a shell runs us."""
    become_app_process(config)
    try:
        app, interface = load_app(config)
    except AppLoadError as error:
        report_app_load_error(error)
        return EXIT_APP_LOAD
    serve_cgi(app, interface, config)
    return EXIT_OK


def start_logging(config: Config) -> None:
    """The error log, and the slow log's file, opened before any fork so that every worker
    writes to it (ValueError if it cannot be opened)."""
    configure_logging(config.log_level)
    try:
        open_slow_log(config.slow_log)
    except OSError as error:
        raise ValueError(f"slow_log: {error}") from None


def report_app_load_error(error: AppLoadError) -> None:
    """One line for the operator, after the app's own traceback when its code failed."""
    if error.__cause__ is not None:
        logger.error("the application failed to import", exc_info=error.__cause__)
    print(f"fcgigw: {error}", file=sys.stderr)


def exit_on_early_signals() -> None:
    """Until a server installs its own handlers, SIGTERM and SIGINT end the process cleanly
    (exit 0): the sockets listen before the app and its lifespan have started, so whoever
    sees them accept may already send the signal."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(EXIT_OK)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def ignore_reload_signals(*, hang_up: bool) -> None:
    """Without --workers there is nothing to reload or resize: SIGTTIN and SIGTTOU, and
    SIGHUP if ``hang_up``, are logged and ignored (by default HUP would kill the process
    without a graceful stop, and TTIN and TTOU would suspend it, its connections hanging)."""

    def ignored(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        logger.warning("%s ignored: reloading and resizing need --workers", name)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)[0 if hang_up else 1 :]:
            signal.signal(signum, ignored)


def serve(server: Server | AsyncServer) -> int:
    """Run ``server`` until it stops; the exit code."""
    try:
        server.serve_forever()
    except LifespanFailure as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_LIFESPAN
    return EXIT_OK


def load_app(config: Config) -> tuple[Any, str]:
    """The application to serve and its interface: APP, or the diagnostics page."""
    if config.app is None:
        from .diagnostics import app as diagnostics_app

        logger.info("no APP given: serving the diagnostics page")
        return diagnostics_app, "wsgi"
    app = import_app(config.app, factory=config.factory)
    interface = detect_interface(app) if config.interface == "auto" else config.interface
    return (as_asgi3(app) if interface == "asgi" else app), interface


def make_server(
    app: Any,
    interface: str,
    config: Config,
    listeners: list[socket.socket] | None = None,
    seat: Seat | None = None,
) -> Server | AsyncServer:
    """The threaded server for WSGI, the asyncio one for ASGI; ``seat``: the worker's place
    on its supervisor's scoreboard (a process alone makes its own when a feature needs it)."""
    seat = seat or standalone_seat(config)
    server: Server | AsyncServer
    if interface == "asgi":
        server = AsyncServer(app, config, listeners, seat)
    else:
        server = Server(app, config, listeners, seat)
    if config.status_path or config.ping_path:
        pages = StatusPages(config, seat.board if seat else None, server.listeners)
        wrap = with_status_asgi if interface == "asgi" else with_status_wsgi
        server.app = wrap(server.app, pages)
    return server


def supervise(config: Config, notifier: Notifier) -> int:
    """--workers N: the supervisor opens the listeners and forks workers that import the app."""
    try:
        listeners = open_listeners(config)
    except BindError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_BIND
    try:
        with pid_file(config.pid_file):
            supervisor = Supervisor(config, listeners, functools.partial(run_worker, config))
            supervisor.notifier = notifier
            return supervisor.run()
    finally:
        for sock in listeners:
            sock.close()


def run_worker(
    config: Config,
    listeners: list[socket.socket],
    on_ready: Callable[[], None] | None,
    seat: Seat | None = None,
) -> int:
    """One process that serves: a supervised worker in its forked process, or the only one.
    The sockets are bound; it switches to --user and --chdir, imports the app, serves."""
    become_app_process(config)
    try:
        app, interface = load_app(config)
    except AppLoadError as error:
        report_app_load_error(error)
        return EXIT_APP_LOAD
    server = make_server(app, interface, config, listeners, seat)
    server.on_ready = on_ready
    # What the app built at import lives as long as the process: out of the cycle collector's
    # way, so its full collections do not walk the whole app (Django: ~10^5 objects) again.
    gc.freeze()
    return serve(server)
