"""Session-wide hooks for every test directory."""

from __future__ import annotations

import pytest
from servers import remove_temporary_dirs


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Leave no temporary directory behind (each xdist worker removes its own)."""
    remove_temporary_dirs()
