"""Pure Python by default; with FCGIGW_COMPILE=1 the hot path is compiled by mypyc.

The metadata lives in pyproject.toml. build_backend/fcgigw_build.py brings mypy into the build
environment when the compiled build is asked for.
"""

from __future__ import annotations

import os

from setuptools import setup

#: The per-request path: records, the connection core, both backends and the adapters.
#: Every other module (CLI, config, supervisor, status page) stays Python: it runs once.
COMPILED_MODULES = [
    f"src/fcgigw/{name}.py"
    for name in [
        "digits",
        # the sans-I/O protocol core
        "protocol/client_connection",
        "protocol/connection",
        "protocol/request_input",
        "protocol/constants",
        "protocol/errors",
        "protocol/events",
        "protocol/framing",
        "protocol/pairs",
        "protocol/records",
        "protocol/settings",
        "protocol/state",
        # the connection core and what both backends share
        "server/core",
        "server/core_life",
        "server/core_request",
        "server/core_requests",
        "server/core_settings",
        "server/connection_limit",
        "server/accept",
        "server/lifecycle",
        "server/buffers",
        "server/logs",
        # the threaded backend (WSGI)
        "server/server",
        "server/pool",
        "server/leadership",
        "server/thread_clock",
        "server/thread_turns",
        "server/thread_connection",
        "server/thread_reader",
        "server/thread_writer",
        "server/thread_channel",
        # the asyncio backend (ASGI)
        "server/aio",
        "server/aio_connection",
        "server/aio_channel",
        "server/aio_handover",
        "server/aio_inline",
        # the adapters (not adapters/channel: mypyc cannot subclass OSError)
        "adapters/params",
        "adapters/recent",
        "adapters/response",
        "adapters/streams",
        "adapters/wsgi",
        "adapters/asgi",
    ]
]

ext_modules = []
if os.environ.get("FCGIGW_COMPILE", "") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(COMPILED_MODULES, opt_level="3")

setup(ext_modules=ext_modules)
