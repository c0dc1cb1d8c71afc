"""Start a FastCGI peer that has no command line of its own on a Unix socket.

    python launch.py flup|fcgisgi-wsgi|fcgisgi-asgi MODULE:CALLABLE SOCKET

flup: its threaded ``WSGIServer`` (flup.server.fcgi), as its docs show. fcgisgi: its
asyncio server on uvloop when installed, as fcgigw and uvicorn run ASGI, so the comparison
is between the servers and not between event loops.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any


def load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    server, spec, path = sys.argv[1:]
    app = load(spec)
    if server == "flup":
        from flup.server.fcgi import WSGIServer  # noqa: PLC0415 (only the server asked for)

        WSGIServer(app, bindAddress=path).run()
        return
    import fcgisgi  # noqa: PLC0415

    run = fcgisgi.run_asgi_server if server == "fcgisgi-asgi" else fcgisgi.run_wsgi_server
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(run(app, path))
    except ImportError:
        asyncio.run(run(app, path))


if __name__ == "__main__":
    main()
