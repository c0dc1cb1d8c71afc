"""Listening sockets: TCP (IPv4/IPv6), Unix (stale file replaced, mode set), inherited fd."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

from ..address import Address
from ..config import Config

logger = logging.getLogger("fcgigw.server")

#: listen() backlog: the kernel clamps it to net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 1024


class BindError(Exception):
    """An address could not be listened on; the message is one line for the operator."""


def open_listener(address: Address, socket_mode: int) -> socket.socket:
    """A listening socket for ``address``."""
    if address.kind == "fd":
        return _inherited(address.fd)
    if address.kind == "unix":
        return _unix(address.path, socket_mode)
    return _tcp(address.host, address.port)


def _tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot listen on {_tcp_name(host, port)}: {error.strerror}") from None
    return sock


def _tcp_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _unix(path: str, mode: int) -> socket.socket:
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Create the file with the final mode (no window where it is more open than asked).
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {error.strerror}") from None
    return sock


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a dead process; refuse to touch a live one or a non-socket."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise BindError(f"cannot listen on unix:{path}: the file exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise BindError(f"cannot listen on unix:{path}: {error.strerror}") from None
        os.unlink(path)
        logger.info("removed stale socket file %s", path)
    else:
        raise BindError(f"cannot listen on unix:{path}: another process is listening there")
    finally:
        probe.close()


def _inherited(fd: int) -> socket.socket:
    """fd://N: a listening socket passed in by a supervisor or web server (FastCGI §2.2)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError as error:
        raise BindError(f"cannot use fd://{fd}: {error.strerror}") from None
    if not stat.S_ISSOCK(mode):
        # Python >= 3.8's socket.fromfd raises on a non-socket; check first for a clear message.
        raise BindError(f"cannot use fd://{fd}: it is not a socket")
    sock = socket.socket(fileno=fd)
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise BindError(f"cannot use fd://{fd}: the socket is not listening")
    return sock


def open_listeners(config: Config) -> list[socket.socket]:
    """Every --bind address as a listening socket; all or none (a failure closes the rest)."""
    opened: list[socket.socket] = []
    try:
        for address in config.addresses:
            opened.append(open_listener(address, config.socket_mode))
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return opened


def describe(sock: socket.socket) -> str:
    """The address a listener is bound to, as the --bind syntax writes it."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    return _tcp_name(name[0], name[1])
