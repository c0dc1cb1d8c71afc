"""fcgigw.serve(app, **settings) from a script, the way an application embeds fcgigw."""

from __future__ import annotations

import platform
import signal
import subprocess
import sys

from servers import REPO, child_environment, free_port, wait_until_connectable

from fcgigw.client import FastCGIClient, build_params
from fcgigw.server.malloc import limit_malloc_arenas

SCRIPT = """
import fcgigw

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"embedded " + environ["SCRIPT_NAME"].encode()]

fcgigw.serve(app, bind="{address}", threads=2, root_path="/mount")
"""


def test_serve_runs_an_app_with_settings_until_sigterm() -> None:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(address=address)],
        env=child_environment(),
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_connectable(address, process)
        with FastCGIClient(address, timeout=20) as client:
            response = client.request(build_params("GET", "/mount/page"))
        with FastCGIClient(address, timeout=20) as client:
            values = client.get_values([b"FCGI_MAX_REQS"])
        assert response.body == b"embedded /mount"  # root_path reached the translator
        assert values == {b"FCGI_MAX_REQS": b"2"}  # and threads reached the pool
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_malloc_arenas_are_capped_unless_the_environment_says() -> None:
    """glibc's arenas capped (flat RSS in the soak); MALLOC_ARENA_MAX, if set, wins."""
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "8"}) is False
    if sys.platform.startswith("linux") and "glibc" in " ".join(platform.libc_ver()):
        assert limit_malloc_arenas({}) is True
