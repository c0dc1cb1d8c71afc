"""fcgigw: serve WSGI and ASGI applications to web servers over FastCGI 1.0."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def compiled() -> bool:
    """True when the per-request modules run as mypyc-compiled C: the fast build
    (``FCGIGW_COMPILE=1 pip install fcgigw``), False for the pure-Python one."""
    from .protocol import framing

    return not framing.__file__.endswith(".py")


def version_line() -> str:
    """What ``fcgigw --version`` prints: the version and which build this is."""
    build = "compiled by mypyc" if compiled() else "pure Python"
    return f"fcgigw {__version__} ({build})"


def serve(app: Any, **settings: Any) -> None:
    """Serve a WSGI or ASGI ``app`` until SIGTERM/SIGINT:
    ``fcgigw.serve(app, bind="unix:/run/app.sock")``.

    Settings are the Config fields (see ``fcgigw --help``); FCGIGW_* variables apply too.
    Without ``bind`` it serves the way it was started, which is what a dispatch.fcgi needs:
    on the listening socket a web server left on fd 0 (mod_fcgid, lighttpd; FastCGI §2.2),
    on systemd's sockets, as one CGI request (mod_cgi, a shell), else on 127.0.0.1:9000.
    """
    import os

    from .adapters.app_loader import as_asgi3, detect_interface
    from .cli import make_server
    from .config import load_config
    from .server.cgi import serve_cgi, started_as_cgi
    from .server.logs import configure_logging
    from .server.stdio import reopen_missing_stdio

    reopen_missing_stdio()  # before logging: fds 1 and 2 may be closed (FastCGI §2.2)
    if isinstance(settings.get("bind"), str):
        settings["bind"] = (settings["bind"],)
    config = load_config(settings)
    configure_logging(config.log_level)
    interface = detect_interface(app) if config.interface == "auto" else config.interface
    app = as_asgi3(app) if interface == "asgi" else app
    if started_as_cgi(config, os.environ):
        serve_cgi(app, interface, config)
        return
    make_server(app, interface, config).serve_forever()


__all__ = ["__version__", "compiled", "serve", "version_line"]
