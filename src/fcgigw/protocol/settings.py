"""The protocol core's limits and capabilities: named settings with units (STYLE habit 4)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .constants import Role


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """What one connection accepts. The server builds it from the validated Config."""

    #: Bytes of one request's PARAMS stream. Apache allows 100 header fields of 8190 bytes
    #: (LimitRequestFields x LimitRequestFieldSize, ~800 KiB); nginx 4 x 8 KiB by default.
    max_params_bytes: int = 1024 * 1024
    #: Pairs in one PARAMS (or GET_VALUES) stream: Apache's 100 header fields plus the ~40 CGI
    #: variables, with room for cgi-fcgi forwarding its whole environment.
    max_params_count: int = 1000
    #: Requests active at once on one connection (FCGI_OVERLOADED beyond it, §5.5).
    max_concurrent_requests_per_connection: int = 100
    #: Whether several requests may be active on one connection (§4.1 FCGI_MPXS_CONNS); when
    #: False a second BEGIN_REQUEST is refused with FCGI_CANT_MPX_CONN (§5.5).
    multiplex_connections: bool = True
    #: Roles served; any other gets FCGI_UNKNOWN_ROLE (§5.5).
    roles: frozenset[Role] = field(default_factory=lambda: frozenset(Role))
    #: Reported as FCGI_MAX_CONNS (§4.1); the server enforces it.
    max_connections: int = 1000
    #: Reported as FCGI_MAX_REQS (§4.1); the server enforces it.
    max_requests: int = 100
