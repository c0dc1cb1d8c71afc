"""Which web servers may connect: FCGI_WEB_SERVER_ADDRS (§3.2) and --allow-from."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

logger = logging.getLogger("fcgigw.server")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PeerAllowlist:
    """Addresses and networks allowed to connect over TCP; empty means everyone."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(_parse(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, family: int, address: object) -> bool:
        """§3.2: check the peer of a new TCP connection against the list. Unix-socket peers are
        governed by the socket file's permissions (--socket-mode) instead."""
        if not self.networks or family == socket.AF_UNIX:
            return True
        host = address[0] if isinstance(address, tuple) else str(address)
        peer = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)


def _parse(entry: str) -> Network:
    try:
        return ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(f"--allow-from: {entry!r} is not an IP address or network") from None
