"""systemd's service notifications (sd_notify(3)), for a unit with ``Type=notify``.

With ``Type=simple`` systemd calls fcgigw started the moment it forks it: ``systemctl start``
succeeds for an app that cannot import, and nginx, ordered after it, may start before it
listens. With ``Type=notify`` systemd waits for ``READY=1``, which fcgigw sends once it
serves (the app imported, ASGI's lifespan started, a worker of each pool serving), as
php-fpm does. A reload (SIGHUP to a supervisor or a pool master) says ``RELOADING=1`` and
``READY=1`` again when the new processes serve; a stop says ``STOPPING=1``. ``STATUS=``
lines show in ``systemctl status``.

The protocol is a datagram of ``NAME=value`` lines to the Unix socket in ``NOTIFY_SOCKET``
(``@`` for the abstract namespace). systemd takes them from the main process only
(``NotifyAccess=main``), so only the process systemd started speaks: it takes the variable
out of the environment before anything forks, and the workers and the app never see it.
No systemd library is needed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, MutableMapping

logger = logging.getLogger("fcgigw.server")


class Notifier:
    """Sends notifications to systemd's socket; does nothing when there is none."""

    def __init__(self, address: str | None = None) -> None:
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self.address = address or None
        self._generation = -1  # the last one announced by serving()

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        """The notifier of the process systemd started, taking NOTIFY_SOCKET out of
        ``environ`` so that no process forked or started after this one uses it."""
        return cls(environ.pop("NOTIFY_SOCKET", None))

    def ready(self, status: str) -> None:
        """Serving: ``systemctl start`` (or reload) returns."""
        self.send(f"READY=1\nSTATUS={status}")

    def serving(self, generation: int, status: str) -> None:
        """READY=1 for a generation of processes (a supervisor's workers), once: when the
        first of them serves."""
        if generation != self._generation:
            self._generation = generation
            self.ready(status)

    def reloading(self, status: str) -> None:
        """A reload began; READY=1 ends it (MONOTONIC_USEC: for Type=notify-reload)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")

    def stopping(self, status: str) -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")

    def send(self, message: str) -> None:
        """One datagram; a failure is logged once and notifications stop (systemd gone)."""
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode("utf-8", "replace"), self.address)
        except OSError as error:
            logger.warning("cannot notify systemd at %r: %s", self.address, error)
            self.address = None


class ReadyWhenSettled:
    """READY=1 once each of the children a parent started (a pool master's pools, by name)
    has settled, serving or failed, and one serves: at the start, and after a reload."""

    def __init__(self, serving: Callable[[], list[str]]) -> None:
        self.notifier = Notifier()  # systemd's, for the process it started (cli.py sets it)
        self._serving = serving  # the children that serve, by name
        self._awaiting: set[str] | None = None  # None: systemd was told

    def expect(self, names: Iterable[str]) -> None:
        """Ready once each of ``names`` settled (now, if there is none)."""
        self._awaiting = set(names)
        self.settled("")

    def settled(self, name: str) -> None:
        """``name`` serves or failed. Ready once none is awaited and one serves: a master
        whose every pool failed is not (it stops, or waits for a pool's restart)."""
        awaiting = self._awaiting
        if awaiting is None:
            return
        awaiting.discard(name)
        serving = self._serving()
        if not awaiting and serving:
            self._awaiting = None
            self.notifier.ready(f"serving: {', '.join(serving)}")
