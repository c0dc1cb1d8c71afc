"""What is measured: the servers under test and the scenarios, each one row of a table.

A target says how to start one worker process of a server on a Unix socket with a
scenario's app, and whether nginx talks to it over FastCGI or proxies HTTP. Adding a
server is adding a row here.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
VENV_PYTHON = HERE / ".venv" / "bin" / "python"
#: fcgigw's compiled build (FCGIGW_COMPILE=1, mypyc) in a venv of its own (setup.sh).
COMPILED_PYTHON = HERE / ".venv-mypyc" / "bin" / "python"
UWSGI_PLUGIN = Path("/usr/lib/uwsgi/plugins/python3_plugin.so")
MiB = 1024 * 1024


def python() -> str:
    """The venv's python (benchmarks/setup.sh) where the peers live, else this one."""
    return str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def app_environment() -> dict[str, str]:
    """This environment with benchmarks/apps importable, for every Python server."""
    paths = [str(APPS), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


@dataclass(frozen=True)
class Scenario:
    """One workload: the app callable every target serves, and how wrk drives it."""

    name: str
    app: str
    connections: int
    expect: bytes  # the body of one check request, sent before the load
    body_bytes: int = 0  # > 0: wrk POSTs a body of this size (the check sends 1 KiB)
    warmup: bool = True  # a 1 s wrk run first; skipped where one request takes seconds
    about: str = ""
    #: One wrk thread holds its own copies of a body (about 3x its size), and building them
    #: takes seconds of each cell at 200 MiB; one thread is plenty to wait on a slow reader.
    wrk_threads: int = 2
    #: wrk runs at least this long. A 200 MiB upload takes about a second, so req/s counts
    #: a few of them: 10 s keep that count's step near 5%. At 64 MiB/s one takes 3.1 s, and
    #: a shorter run would complete none (there only the peak RSS matters).
    min_seconds: int = 0


CHECK_BODY_BYTES = 1024
SCENARIOS = {
    s.name: s
    for s in (
        Scenario("hello", "hello", 32, b"Hello, world!", about="13-byte body, 32 connections"),
        Scenario("stream-1m", "stream", 32, b"x" * MiB,
                 about="1 MiB response in 64 KiB chunks, 32 connections"),
        Scenario("upload-10m", "upload", 8, b"1024", 10 * MiB, warmup=False,
                 about="10 MiB POST read and counted, 8 connections"),
        Scenario("upload-200m", "upload", 2, b"1024", 200 * MiB, warmup=False,
                 about="200 MiB POST read as fast as the server gives it, 2 connections",
                 wrk_threads=1, min_seconds=10),
        Scenario("upload-200m-slow", "slow_upload", 2, b"1024", 200 * MiB, warmup=False,
                 about="200 MiB POST to an app that reads 64 MiB/s, 2 connections (peak RSS)",
                 wrk_threads=1, min_seconds=4),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Launch:
    """What a target's command line is made of."""

    python: str
    app: str  # module:callable in benchmarks/apps
    socket: Path
    rundir: Path  # lives for the whole run: the C program is built there once
    fcgigw_args: tuple[str, ...] = ()


Command = Callable[[Launch], list[str]]


@dataclass(frozen=True)
class Target:
    """A server under test: how to start it with one worker, and what it needs."""

    name: str
    interface: str  # wsgi, asgi or c: which apps module serves it
    upstream: str  # fastcgi or http: what nginx speaks to it
    command: Command
    modules: tuple[str, ...] = ()  # Python modules it needs in the venv
    programs: tuple[str, ...] = ()  # executables or files it needs
    scenarios: frozenset[str] = field(default_factory=lambda: frozenset(SCENARIOS))
    stop_signal: int = signal.SIGTERM
    about: str = ""
    #: nginx modes it runs in (False: a new upstream connection per request). An HTTP peer
    #: always gets upstream keep-alive, as its users run it behind nginx.
    modes: frozenset[bool] = frozenset({False, True})

    def app(self, scenario: Scenario) -> str:
        return f"{self.interface}_apps:{scenario.app}"


def _fcgigw(x: Launch) -> list[str]:
    return [x.python, "-m", "fcgigw", "--bind", f"unix:{x.socket}", *x.fcgigw_args, x.app]


def _fcgigw_compiled(x: Launch) -> list[str]:
    return [str(COMPILED_PYTHON), *_fcgigw(x)[1:]]


def _launch(server: str) -> Command:
    return lambda x: [x.python, str(APPS / "launch.py"), server, x.app, str(x.socket)]


def _uwsgi(x: Launch) -> list[str]:
    module, _, name = x.app.partition(":")
    # No master: one process that serves, as the other single-process targets.
    return [
        "uwsgi", "--plugin", "python3", "--fastcgi-socket", str(x.socket), "--processes", "1",
        "--wsgi-file", str(APPS / f"{module}.py"), "--callable", name, "--need-app",
        "--disable-logging", "--chmod-socket=666",
    ]  # fmt: skip


def _c(x: Launch) -> list[str]:
    return [str(build_c(x.rundir)), str(x.socket)]


def _floor(kind: str) -> Command:
    return lambda x: [x.python, str(HERE / "floor.py"), kind, str(x.socket)]


def _gunicorn(x: Launch) -> list[str]:
    return [x.python, "-m", "gunicorn", "--bind", f"unix:{x.socket}", "--workers", "1", x.app]


def _uvicorn(x: Launch) -> list[str]:
    # uvicorn picks uvloop and httptools when installed (uvicorn[standard]); the modules
    # check below makes their absence a skipped target rather than a slower one.
    quiet = ["--no-access-log", "--log-level", "warning"]
    return [x.python, "-m", "uvicorn", "--uds", str(x.socket), *quiet, x.app]


def _granian(interface: str) -> Command:
    # One worker process with granian's own default threads and loop (uvloop when
    # installed, as here); its access log is off by default.
    return lambda x: [
        x.python, "-m", "granian", "--interface", interface, "--uds", str(x.socket),
        "--workers", "1", "--log-level", "warning", x.app,
    ]  # fmt: skip


HTTP_MODES = frozenset({True})
TARGETS = {
    t.name: t
    for t in (
        Target("fcgigw-wsgi", "wsgi", "fastcgi", _fcgigw, ("fcgigw",), about="defaults: 8 threads"),
        Target("fcgigw-asgi", "asgi", "fastcgi", _fcgigw, ("fcgigw",), about="defaults: uvloop"),
        Target("fcgigw-wsgi-mypyc", "wsgi", "fastcgi", _fcgigw_compiled, (),
               (str(COMPILED_PYTHON),), about="the compiled build (FCGIGW_COMPILE=1)"),
        Target("fcgigw-asgi-mypyc", "asgi", "fastcgi", _fcgigw_compiled, (),
               (str(COMPILED_PYTHON),), about="the compiled build, uvloop"),
        Target("uwsgi", "wsgi", "fastcgi", _uwsgi, (), ("uwsgi", str(UWSGI_PLUGIN)),
               stop_signal=signal.SIGINT, about="--fastcgi-socket, 1 process, no threads"),
        Target("fcgisgi-wsgi", "wsgi", "fastcgi", _launch("fcgisgi-wsgi"), ("fcgisgi",),
               about="asyncio server on uvloop, thread pool"),
        Target("fcgisgi-asgi", "asgi", "fastcgi", _launch("fcgisgi-asgi"), ("fcgisgi",),
               about="uvloop"),
        Target("flup", "wsgi", "fastcgi", _launch("flup"), ("flup",),
               about="flup.server.fcgi.WSGIServer (threaded)"),
        Target("c-libfcgi", "c", "fastcgi", _c, (), ("gcc", "/usr/include/fcgiapp.h"),
               frozenset({"hello"}), signal.SIGKILL, "32 threads; hello only"),
        Target("floor-asyncio", "c", "fastcgi", _floor("asyncio"), ("uvloop",),
               scenarios=frozenset({"hello"}),
               about="floor.py: canned hello on uvloop, no parsing, no app; hello only"),
        Target("gunicorn", "wsgi", "http", _gunicorn, ("gunicorn",),
               about="proxy_pass, sync worker", modes=HTTP_MODES),
        Target("uvicorn", "asgi", "http", _uvicorn, ("uvicorn", "uvloop", "httptools"),
               about="uvicorn[standard]: proxy_pass, uvloop + httptools", modes=HTTP_MODES),
        Target("granian-wsgi", "wsgi", "http", _granian("wsgi"), ("granian",),
               about="proxy_pass, 1 worker, its default threads", modes=HTTP_MODES),
        Target("granian-asgi", "asgi", "http", _granian("asgi"), ("granian",),
               about="proxy_pass, 1 worker, its default loop (uvloop)", modes=HTTP_MODES),
    )
}  # fmt: skip


def unavailable(target: Target) -> str | None:
    """Why ``target`` cannot run here, or None."""
    for program in target.programs:
        if not (shutil.which(program) or os.path.exists(program)):
            return f"{program} missing (benchmarks/setup.sh)"
    for module in target.modules:
        found = subprocess.run(
            [python(), "-c", f"import {module}"], capture_output=True, check=False
        )
        if found.returncode != 0:
            return f"{module} not importable by {python()} (benchmarks/setup.sh)"
    return None


def build_c(rundir: Path) -> Path:
    """Compile the libfcgi hello into ``rundir`` on first use."""
    binary = rundir / "fcgi_hello"
    if not binary.exists():
        source = str(APPS / "fcgi_hello.c")
        subprocess.run(["gcc", "-O2", "-o", str(binary), source, "-lfcgi", "-lpthread"], check=True)
    return binary
