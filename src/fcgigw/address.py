"""Address syntax shared by ``--bind`` and the client: HOST:PORT, [IPV6]:PORT, unix:PATH, fd://N."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .digits import is_ascii_digits

AddressKind = Literal["tcp", "unix", "fd"]


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address; which fields mean something depends on ``kind``."""

    kind: AddressKind
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1

    def __str__(self) -> str:
        return format_address(self)


#: The forms of an address, to listen on (--bind) and to connect to: an fd://N socket is
#: inherited, so it only listens.
_LISTEN_FORMS = "HOST:PORT, [IPV6]:PORT, unix:PATH or fd://N"
_CONNECT_FORMS = "HOST:PORT, [IPV6]:PORT or unix:PATH"


def parse_address(text: str, *, allow_fd: bool = False) -> Address:
    """Parse an address, with a one-line error naming what is wrong."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError("unix: needs a path, e.g. unix:/run/app.sock")
        return Address("unix", path=path)
    if text.startswith("fd://"):
        if not allow_fd:
            raise ValueError("fd://N addresses are for listening, not connecting")
        number = text[5:]
        if not is_ascii_digits(number):
            raise ValueError(f"fd://N needs a file descriptor number, got {text!r}")
        return Address("fd", fd=int(number))
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"IPv6 addresses look like [::1]:9000, got {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            forms = _LISTEN_FORMS if allow_fd else _CONNECT_FORMS
            raise ValueError(f"address must be {forms}, got {text!r}")
    if not is_ascii_digits(port_text) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return Address("tcp", host=host or "0.0.0.0", port=int(port_text))


def format_address(address: Address) -> str:
    """The text form ``parse_address`` reads back."""
    if address.kind == "unix":
        return f"unix:{address.path}"
    if address.kind == "fd":
        return f"fd://{address.fd}"
    if ":" in address.host:
        return f"[{address.host}]:{address.port}"
    return f"{address.host}:{address.port}"
