"""fcgigw in a subprocess, over TCP and over a Unix socket (waitress runs every functional
test over both)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import RunningProcess, run_fcgigw, short_tempdir


@pytest.fixture(scope="module", params=["tcp", "unix"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningProcess]:
    """The test apps' router under fcgigw with default settings."""
    address = f"unix:{short_tempdir()}/fcgigw.sock" if request.param == "unix" else None
    with run_fcgigw("--access-log", "testapps:router", address=address) as running:
        yield running
