"""Listening sockets: TCP (IPv4/IPv6), Unix (stale file replaced, mode set, file removed on
close), an inherited fd, and without --bind the socket whoever started fcgigw handed over: fd 0
from a web server (FastCGI §2.2) or systemd's LISTEN_FDS (sd_listen_fds(3)), else
127.0.0.1:9000."""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import socket
import stat
from collections.abc import Iterable, Mapping, MutableMapping

from ..address import Address, format_address, parse_address
from ..config import Config
from ..digits import is_ascii_digits

logger = logging.getLogger("fcgigw.server")

#: listen() backlog: the kernel clamps it to net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 1024
#: Where fcgigw listens with no --bind, no socket on fd 0 and no LISTEN_FDS (php-fpm's port).
DEFAULT_BIND = "127.0.0.1:9000"
#: FastCGI §2.2: FCGI_LISTENSOCK_FILENO equals STDIN_FILENO.
FCGI_LISTENSOCK_FILENO = 0
#: sd_listen_fds(3): the sockets systemd passes start at fd 3 (SD_LISTEN_FDS_START).
SD_LISTEN_FDS_START = 3
SYSTEMD_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class BindError(Exception):
    """An address could not be listened on; the message is one line for the operator."""


def open_listener(
    address: Address, socket_mode: int, owner: tuple[str, str] = ("", "")
) -> socket.socket:
    """A listening socket for ``address``."""
    if address.kind == "fd":
        return _inherited(address.fd)
    if address.kind == "unix":
        return _unix(address.path, socket_mode, owner)
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


class UnixListener(socket.socket):
    """A Unix socket whose file fcgigw created: ``close()`` removes the file too, as php-fpm
    and gunicorn do at shutdown, so that no dead socket file is left for the web server to
    try. Only the process that bound it does so (forked workers share the socket, and their
    exit must not take the file from the supervisor), and only while the file is still the
    one it bound (same device and inode): an fcgigw started since may have replaced it.
    Sockets fcgigw was handed (fd 0, LISTEN_FDS, fd://N) are plain sockets: their file
    belongs to whoever made it."""

    #: (pid, path, device, inode) of the file this process bound; None once removed, and in
    #: copies made by dup().
    _bound: tuple[int, str, int, int] | None = None

    def bind_file(self, path: str) -> None:
        """bind() to ``path``, which must not exist, and remember the file it creates."""
        self.bind(path)
        info = os.stat(path)
        self._bound = (os.getpid(), os.path.abspath(path), info.st_dev, info.st_ino)

    def close(self) -> None:
        self._remove_file()
        super().close()

    def _remove_file(self) -> None:
        bound, self._bound = self._bound, None
        if bound is None or bound[0] != os.getpid():
            return
        _, path, device, inode = bound
        try:
            info = os.stat(path)
            if (info.st_dev, info.st_ino) == (device, inode):
                os.unlink(path)
        except OSError as error:  # gone already, or the directory is no longer ours
            logger.debug("socket file %s not removed: %s", path, error.strerror)


def _unix(path: str, mode: int, owner: tuple[str, str] = ("", "")) -> socket.socket:
    _remove_stale_socket(path)
    uid, gid = _ids(path, *owner)
    sock = UnixListener(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Create the file with the final mode (no window where it is more open than asked).
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind_file(path)
        finally:
            os.umask(old_umask)
        if uid != -1 or gid != -1:
            # php-fpm's listen.owner/listen.group: the web server's group may connect.
            os.chown(path, uid, gid)
        os.chmod(path, mode)
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        raise BindError(f"cannot listen on unix:{path}: {error.strerror}") from None
    return sock


def _ids(path: str, user: str, group: str) -> tuple[int, int]:
    """--socket-user and --socket-group as ids (-1: leave as is); names must exist."""
    try:
        uid = -1 if not user else int(user) if is_ascii_digits(user) else pwd.getpwnam(user).pw_uid
    except KeyError:
        raise BindError(f"cannot listen on unix:{path}: no user {user!r}") from None
    try:
        gid = (
            -1
            if not group
            else int(group)
            if is_ascii_digits(group)
            else grp.getgrnam(group).gr_gid
        )
    except KeyError:
        raise BindError(f"cannot listen on unix:{path}: no group {group!r}") from None
    return uid, gid


def _set_unix_permissions(path: str, config: Config) -> None:
    """--socket-mode, --socket-user and --socket-group on a socket file that already
    listens: a pool whose settings changed keeps its socket, and only these may differ."""
    uid, gid = _ids(path, *_owner(config))
    try:
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        os.chmod(path, config.socket_mode)
    except OSError as error:
        raise BindError(f"cannot set the mode of unix:{path}: {error.strerror}") from None


def _owner(config: Config) -> tuple[str, str]:
    return config.socket_user, config.socket_group


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
    if not _is_listening(sock):
        sock.detach()
        raise BindError(f"cannot use fd://{fd}: the socket is not listening")
    return sock


def _is_listening(sock: socket.socket) -> bool:
    """SO_ACCEPTCONN where the platform has it; else the spec's own test (§2.2):
    getpeername() on the listening socket fails with ENOTCONN."""
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except (OSError, AttributeError):
        pass
    try:
        sock.getpeername()
    except OSError as error:
        return error.errno == errno.ENOTCONN
    return False


def listening_on_fd0() -> bool:
    """True when fd 0 is a listening socket: a web server spawned fcgigw (FastCGI §2.2;
    mod_fcgid, lighttpd bin-path, spawn-fcgi, cgi-fcgi -start: web-servers.md §4)."""
    try:
        if not stat.S_ISSOCK(os.fstat(FCGI_LISTENSOCK_FILENO).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(fileno=FCGI_LISTENSOCK_FILENO)
    try:
        return _is_listening(probe)
    finally:
        probe.detach()  # fd 0 stays open; only the probe object goes


def systemd_fd_count(environ: Mapping[str, str]) -> int:
    """How many sockets systemd passed to this process (sd_listen_fds(3)). 0 without
    LISTEN_FDS, or when LISTEN_PID names another process: the variables were then meant for
    a parent (a wrapper script that did not exec), and its fds are not ours to take."""
    pid_text, count_text = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if pid_text is None or count_text is None:
        return 0
    if not is_ascii_digits(pid_text.strip()) or int(pid_text) != os.getpid():
        logger.warning(
            "LISTEN_FDS ignored: LISTEN_PID=%s is not this process (%d); "
            "a wrapper script must exec fcgigw",
            pid_text,
            os.getpid(),
        )
        return 0
    if not is_ascii_digits(count_text.strip()):
        logger.warning("LISTEN_FDS ignored: %r is not a number", count_text)
        return 0
    return int(count_text)


def adopt_systemd_sockets(environ: MutableMapping[str, str]) -> list[socket.socket]:
    """The sockets systemd passed (fds 3, 4, …), each named from LISTEN_FDNAMES in the log.
    The variables are removed afterwards, as sd_listen_fds(unset_environment=1) does, so a
    process the app starts does not try to adopt the same fds again."""
    count = systemd_fd_count(environ)
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    for name in SYSTEMD_VARIABLES:
        environ.pop(name, None)
    adopted: list[socket.socket] = []
    try:
        for index in range(count):
            fd = SD_LISTEN_FDS_START + index
            sock = _inherited(fd)
            os.set_inheritable(fd, False)  # sd_listen_fds sets FD_CLOEXEC too
            adopted.append(sock)
            name = names[index] if index < len(names) and names[index] else f"fd {fd}"
            logger.info("adopted systemd socket %s (%s)", name, describe(sock))
    except BaseException:
        for sock in adopted:
            sock.close()
        raise
    return adopted


def _automatic(config: Config) -> list[socket.socket]:
    """No --bind: fd 0 if a web server spawned us on a listening socket, else systemd's
    sockets, else DEFAULT_BIND."""
    if listening_on_fd0():
        sock = _inherited(FCGI_LISTENSOCK_FILENO)
        logger.info("fd 0 is a listening socket (%s): serving on it (FastCGI §2.2)", describe(sock))
        return [sock]
    adopted = adopt_systemd_sockets(os.environ)
    if adopted:
        return adopted
    return [open_listener(parse_address(DEFAULT_BIND), config.socket_mode, _owner(config))]


def open_listeners(config: Config) -> list[socket.socket]:
    """Every --bind address as a listening socket; all or none (a failure closes the rest).
    Without --bind, the socket fcgigw was handed (see _automatic)."""
    if not config.bind:
        return _automatic(config)
    opened: list[socket.socket] = []
    try:
        for address in config.addresses:
            opened.append(open_listener(address, config.socket_mode, _owner(config)))
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


#: Who wants listeners from a ListenerSet: a name (a pool's) and its settings.
Owner = tuple[str, Config]


class ListenerSet:
    """Listening sockets by address, kept open across reloads by the master of a file of
    pools: a replaced pool's new process gets the very socket the old one accepts on, so
    no connection is refused meanwhile."""

    def __init__(self) -> None:
        self.sockets: dict[str, socket.socket] = {}

    @staticmethod
    def keys(name: str, config: Config) -> list[str]:
        keys = []
        for address in config.addresses:
            key = format_address(address)
            if address.kind == "tcp" and address.port == 0:
                key = f"{name}/{key}"  # each owner asked for a port of its own
            keys.append(key)
        return keys

    def open_for(self, owners: Iterable[Owner]) -> None:
        """Open what the owners need and is not open yet, all or none. A Unix socket kept
        gets the owner's --socket-mode, --socket-user and --socket-group again."""
        opened: list[str] = []
        try:
            for name, config in owners:
                for key, address in zip(self.keys(name, config), config.addresses, strict=True):
                    if key in self.sockets:
                        if address.kind == "unix":
                            _set_unix_permissions(address.path, config)
                        continue
                    self.sockets[key] = open_listener(address, config.socket_mode, _owner(config))
                    opened.append(key)
        except BaseException:
            for key in opened:
                self.sockets.pop(key).close()
            raise

    def of(self, name: str, config: Config) -> list[socket.socket]:
        return [self.sockets[key] for key in self.keys(name, config)]

    def keep_only(self, owners: Iterable[Owner]) -> None:
        """Close the sockets no owner wants any more (a process that still has one keeps it
        until it exits; new connections are refused once it has)."""
        wanted = {key for name, config in owners for key in self.keys(name, config)}
        for key in set(self.sockets) - wanted:
            self.sockets.pop(key).close()

    def close(self) -> None:
        self.keep_only(())
