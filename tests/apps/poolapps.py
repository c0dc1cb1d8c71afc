"""The app the pool and privilege tests run (``poolapps:app``): who serves, as whom, with
which environment. It imports only what fcgigw has imported already: after the switch to
another user, the interpreter's own library may be out of that user's reach (a Python
installed under /root, as pyenv does)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``name=value`` lines: SITE (the pool's env), pid, ids, groups, cwd, NOTIFY_SOCKET;
    /slow?S sleeps S s."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or 1))
    data = {
        "site": os.environ.get("SITE", ""),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "groups": ",".join(str(gid) for gid in os.getgroups()),
        "cwd": os.getcwd(),
        "notify_socket": os.environ.get("NOTIFY_SOCKET", ""),  # systemd's: never the app's
    }
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["".join(f"{name}={value}\n" for name, value in data.items()).encode()]
