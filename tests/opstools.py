"""Helpers for the operations tests: requests over FastCGI, the status page's JSON, and the
processes under a supervisor."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from servers import RunningProcess

from fcgigw.client import FastCGIClient, FastCGIResponse, build_params

TIMEOUT = 20
T = TypeVar("T")


def fcgi_get(address: str, path: str, timeout: float = TIMEOUT) -> FastCGIResponse:
    """One GET on a new connection, straight to fcgigw."""
    with FastCGIClient(address, timeout=timeout) as client:
        return client.request(build_params("GET", path))


def status_json(address: str, path: str = "/status?json") -> dict[str, Any]:
    response = fcgi_get(address, path)
    assert response.status == 200, response
    result: dict[str, Any] = json.loads(response.body)
    return result


def wait_for(condition: Callable[[], T], seconds: float = 15, what: str = "condition") -> T:
    """Poll until ``condition()`` is truthy; its value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met in {seconds} s")
        time.sleep(0.05)


def children(server: RunningProcess) -> set[int]:
    """The live child processes of the supervisor."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == server.process.pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
