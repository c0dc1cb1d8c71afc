"""How many connections wait in a listening socket's accept queue, where the OS tells it.

Linux reports it for a listening TCP socket in TCP_INFO (``tcpi_unacked`` is the accept
queue, ``tcpi_sacked`` its limit: net/ipv4/tcp.c, tcp_get_info), and for a listening Unix
socket through sock_diag (UNIX_DIAG_RQLEN: the queue and its limit, what ``ss -xl`` shows).
Elsewhere, and for inherited sockets of other kinds, the answer is None: unknown.
"""

from __future__ import annotations

import os
import socket
import struct

_TCP_INFO_BYTES = 104
_TCP_INFO_QUEUE = struct.Struct("<II")  # tcpi_unacked, tcpi_sacked, at offset 24
_TCP_INFO_QUEUE_AT = 24

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
TCP_LISTEN = 10
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_RQLEN = 4
_NLMSG = struct.Struct("<IHHII")
_UNIX_DIAG_REQ = struct.Struct("<BBHIIIII")  # family, protocol, pad, states, ino, show, cookie
_UNIX_DIAG_MSG_BYTES = 16
_RTATTR = struct.Struct("<HH")
_RQLEN = struct.Struct("<II")
_NO_COOKIE = 0xFFFFFFFF


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's limit), or None if unknown."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return _tcp_queue(sock)
        if sock.family == socket.AF_UNIX:
            return _unix_queue(os.fstat(sock.fileno()).st_ino)
    except (OSError, AttributeError, struct.error):
        pass
    return None


def _tcp_queue(sock: socket.socket) -> tuple[int, int]:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    queued, limit = _TCP_INFO_QUEUE.unpack_from(info, _TCP_INFO_QUEUE_AT)
    return int(queued), int(limit)


def _unix_queue(inode: int) -> tuple[int, int] | None:
    request = _UNIX_DIAG_REQ.pack(
        socket.AF_UNIX, 0, 0, 1 << TCP_LISTEN, inode, UDIAG_SHOW_RQLEN, _NO_COOKIE, _NO_COOKIE
    )
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(1.0)
        netlink.send(header + request)
        reply = netlink.recv(65536)
    length, kind, _, _, _ = _NLMSG.unpack_from(reply, 0)
    if kind != SOCK_DIAG_BY_FAMILY:
        return None
    at = _NLMSG.size + _UNIX_DIAG_MSG_BYTES
    while at + _RTATTR.size <= min(length, len(reply)):
        size, attribute = _RTATTR.unpack_from(reply, at)
        if size < _RTATTR.size:
            break
        if attribute == UNIX_DIAG_RQLEN:
            queued, limit = _RQLEN.unpack_from(reply, at + _RTATTR.size)
            return int(queued), int(limit)
        at += (size + 3) & ~3
    return None
