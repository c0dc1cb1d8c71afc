"""--pid-file: the main process id for init scripts and monitoring, removed on exit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def pid_file(path: str) -> Iterator[None]:
    """Write this process's id to ``path`` (if set) for the duration of the block. Written
    to a temporary name and renamed, so a reader never sees a half-written file."""
    if not path:
        yield
        return
    pid = os.getpid()
    temporary = f"{path}.{pid}.tmp"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{pid}\n")
    os.replace(temporary, path)
    try:
        yield
    finally:
        # Only our own: a forked worker leaving the block, or a newer process that took the
        # file over, must not lose it.
        with contextlib.suppress(OSError):
            with open(path, encoding="ascii") as file:
                owner = int(file.read().strip() or 0)
            if owner == pid == os.getpid():
                os.unlink(path)
