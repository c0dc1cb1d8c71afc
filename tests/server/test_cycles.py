"""A served connection leaves nothing for Python's cycle collector, on either backend.

Every object of a connection and of its requests (core, protocol state, request table,
channels, the params) must go by reference counting the moment the server is done with it.
If they form a cycle instead, they pile up until the collector runs: more memory between
runs, more frequent collections, and full collections that walk the whole heap of a large
app (a latency spike every few thousand connections). The scenarios cover new and kept
connections, multiplexed, aborted and half-sent requests, and a peer that vanishes.

The server runs in a child process (the build under test, compiled or not), with the
collector off and DEBUG_SAVEALL on; after the scenarios it collects once and reports what
was unreachable.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from servers import REPO, child_environment

SCRIPT = r"""
import gc, json, logging, os, shutil, socket, sys, tempfile, threading, time

from fcgigw.client import FastCGIClient, build_params
from fcgigw.config import Config
from fcgigw.protocol import AbortRequest, EndRequest, InputData, RecordType, RequestStarted, Role

interface = sys.argv[1]
logging.getLogger("fcgigw").setLevel(logging.CRITICAL)
path = os.path.join(tempfile.mkdtemp(), "s")
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen(64)
config = Config(app="x", interface=interface, threads=4)
if interface == "asgi":
    from asgiapps import echo
    from fcgigw.server.aio import AsyncServer

    server = AsyncServer(echo, config, listeners=[listener])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    open_connections = lambda: len(server.connections)
else:
    from testapps import echo
    from fcgigw.server.server import Server

    server = Server(echo, config, listeners=[listener])
    server.start()
    open_connections = lambda: len(server._snapshot())

address = "unix:" + path
post = build_params("POST", "/echo", body_length=5)


def scenarios():
    for _ in range(10):  # a new connection per request (nginx's default)
        with FastCGIClient(address) as client:
            assert client.request(build_params("GET", "/echo")).status == 200
    with FastCGIClient(address) as client:  # kept (fastcgi_keep_conn on)
        for _ in range(5):
            assert client.request(post, b"hello", keep_connection=True).status == 200
        # Two requests at once on the kept connection (§3.3).
        client.begin(post, keep_connection=True, request_id=1)
        client.begin(post, keep_connection=True, request_id=2)
        client.send_stream(2, b"world", RecordType.STDIN)
        client.send_stream(1, b"hello", RecordType.STDIN)
        ended = set()
        while ended != {1, 2}:  # the two answers interleave in any order
            event = client.next_event()
            if isinstance(event, EndRequest):
                ended.add(event.request_id)
        # Aborted while its body is on its way (§5.4).
        client.begin(post, keep_connection=True, request_id=3)
        client.send_event(InputData(3, b"he"))
        client.send_event(AbortRequest(3))
        client.read_response(3, keep_connection=True)
    with FastCGIClient(address) as client:  # vanishes with the body half sent
        client.begin(post, request_id=1)
        client.send_event(InputData(1, b"he"))
    with FastCGIClient(address) as client:  # vanishes with PARAMS half sent
        started = RequestStarted(1, Role.RESPONDER, False, tuple(post))
        client.send_raw(client.protocol.send(started)[:40])


scenarios()  # warm up: imports, caches, the first connection's one-off objects
deadline = time.monotonic() + 10
while open_connections() and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)
gc.collect()
gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
for _ in range(3):
    scenarios()
deadline = time.monotonic() + 10
while open_connections() and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)  # the threads and the loop finish what they were doing with them
gc.collect()
ours = sorted(
    f"{type(o).__module__}.{type(o).__qualname__}"
    for o in gc.garbage
    if type(o).__module__.startswith("fcgigw")
)
print(json.dumps({"open": open_connections(), "garbage": len(gc.garbage), "ours": ours}))
shutil.rmtree(os.path.dirname(path), ignore_errors=True)
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_connections_and_requests_are_freed_without_the_cycle_collector(interface: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, interface],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_environment(),
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["open"] == 0, report
    # fcgigw's own objects in cycles name the culprit; anything at all means some connection
    # or request object was kept alive by a cycle (a whole connection is ~40 objects).
    assert report["ours"] == [], report
    assert report["garbage"] < 10, report
