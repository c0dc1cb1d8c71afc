"""A running fcgigw for the client's tests (its real peer)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servers import RunningProcess, run_fcgigw


@pytest.fixture(scope="module")
def router() -> Iterator[RunningProcess]:
    with run_fcgigw("testapps:router") as running:
        yield running


@pytest.fixture(scope="module")
def flask_server() -> Iterator[RunningProcess]:
    with run_fcgigw("examples.flask_app:app") as running:
        yield running
