"""``python -m fcgigw [OPTIONS] [APP]``: argv and FCGIGW_* variables into a Config, then serve."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .adapters.app_loader import AppLoadError, detect_interface, import_app
from .config import Config, load_config, parse_value, setting_fields
from .server.listeners import BindError
from .server.logs import configure_logging

#: Exit codes, named so a supervisor can tell "fix your config" from a crash.
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_APP_LOAD = 3
EXIT_BIND = 4

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
        flag = "--" + item.name.replace("_", "-")
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
    return parser


def config_from_args(argv: Sequence[str], environ: dict[str, str] | None = None) -> Config:
    """Parse argv (on top of the environment) into a validated Config."""
    namespace = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    for name, value in vars(namespace).items():
        if value is None:
            continue
        if name == "app" or isinstance(value, bool):
            overrides[name] = value
        elif isinstance(value, list):
            overrides[name] = tuple(part for text in value for part in parse_value(name, text))
        else:
            overrides[name] = parse_value(name, value)
    return load_config(overrides, environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fcgigw`` command."""
    try:
        config = config_from_args(sys.argv[1:] if argv is None else argv)
    except ValueError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    try:
        app = load_app(config)
    except AppLoadError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_APP_LOAD
    from .server.server import Server

    try:
        server = Server(app, config)
    except BindError as error:
        print(f"fcgigw: {error}", file=sys.stderr)
        return EXIT_BIND
    server.serve_forever()
    return EXIT_OK


def load_app(config: Config) -> Any:
    """The application to serve: APP, or the diagnostics page when none is given."""
    if config.app is None:
        from .diagnostics import app as diagnostics_app

        logger.info("no APP given: serving the diagnostics page")
        return diagnostics_app
    app = import_app(config.app, factory=config.factory)
    interface = detect_interface(app) if config.interface == "auto" else config.interface
    if interface != "wsgi":
        raise AppLoadError(
            f"{config.app} is an ASGI application; ASGI support is not in this version"
        )
    return app
