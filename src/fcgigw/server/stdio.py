"""Fds 0, 1 and 2 exist before fcgigw opens anything else.

FastCGI §2.2 says the web server starts the application with stdout and stderr closed, and
cgi-fcgi -start does exactly that (web-servers.md §4). Python then has ``sys.stdout`` and
``sys.stderr`` set to None, and the next file or socket opened takes fd 1 or 2: a stray write
meant for stderr (a C library's, or a child process's) would land in the middle of a FastCGI
connection. So each missing one is opened on /dev/null first, inheritable like a real
standard stream, and the ``sys`` streams are rebuilt on it.
"""

from __future__ import annotations

import os
import sys

STANDARD_FDS = (0, 1, 2)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def reopen_missing_stdio() -> None:
    """Open /dev/null on each of fds 0, 1 and 2 that is closed; call before logging starts."""
    for fd in STANDARD_FDS:
        if _is_open(fd):
            continue
        null = os.open(os.devnull, os.O_RDWR)  # the lowest free fd: this one, as 0..fd-1 exist
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        os.set_inheritable(fd, True)  # os.open makes it close-on-exec; a std stream is not
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (lives as long as the process)
    if sys.stdout is None:
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
