"""fcgigw: serve WSGI and ASGI applications to web servers over FastCGI 1.0."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def serve(app: Any, **settings: Any) -> None:
    """Serve a WSGI or ASGI ``app`` until SIGTERM/SIGINT:
    ``fcgigw.serve(app, bind="unix:/run/app.sock")``.

    Settings are the Config fields (see ``fcgigw --help``); FCGIGW_* variables apply too.
    """
    from .adapters.app_loader import as_asgi3, detect_interface
    from .cli import make_server
    from .config import load_config
    from .server.logs import configure_logging

    if isinstance(settings.get("bind"), str):
        settings["bind"] = (settings["bind"],)
    config = load_config(settings)
    configure_logging(config.log_level)
    interface = detect_interface(app) if config.interface == "auto" else config.interface
    make_server(as_asgi3(app) if interface == "asgi" else app, interface, config).serve_forever()


__all__ = ["__version__", "serve"]
