"""fcgigw: serve WSGI (and ASGI) applications to web servers over FastCGI 1.0."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def serve(app: Any, **settings: Any) -> None:
    """Serve ``app`` until SIGTERM/SIGINT: ``fcgigw.serve(app, bind=("unix:/run/app.sock",))``.

    Settings are the Config fields (see ``fcgigw --help``); FCGIGW_* variables apply too.
    """
    from .config import load_config
    from .server.logs import configure_logging
    from .server.server import Server

    if isinstance(settings.get("bind"), str):
        settings["bind"] = (settings["bind"],)
    config = load_config(settings)
    configure_logging(config.log_level)
    Server(app, config).serve_forever()


__all__ = ["__version__", "serve"]
