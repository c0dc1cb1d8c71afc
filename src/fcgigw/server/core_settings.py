"""The settings a connection core reads (its own deadlines, its requests' ones, the protocol
core's limits), taken once from the validated Config."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..protocol import ProtocolSettings


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """The settings a connection core reads, taken once from the validated Config."""

    protocol: ProtocolSettings
    #: Seconds a connection may take to send a whole PARAMS stream; 0 waits forever.
    header_timeout_seconds: int = 30
    #: Seconds a kept connection may stay idle between requests; 0 keeps it forever.
    idle_timeout_seconds: int = 300
    #: Seconds a request may run before it is answered 504; 0 is no limit.
    request_timeout_seconds: int = 0
    #: Seconds a body may stay silent once answered (not nginx) or after it ended short.
    body_stall_timeout_seconds: int = 10

    @classmethod
    def from_config(cls, config: Config, *, concurrent_requests: int) -> CoreSettings:
        """``concurrent_requests``: what this backend can run at once, reported to the web
        server as FCGI_MAX_REQS (§4.1): the thread count for WSGI, but for ASGI every
        connection's share, since one event loop runs them all."""
        protocol = config.protocol_settings
        if protocol.max_requests != concurrent_requests:
            protocol = ProtocolSettings(
                max_params_bytes=protocol.max_params_bytes,
                max_params_count=protocol.max_params_count,
                max_concurrent_requests_per_connection=(
                    protocol.max_concurrent_requests_per_connection
                ),
                multiplex_connections=protocol.multiplex_connections,
                roles=protocol.roles,
                max_connections=protocol.max_connections,
                max_requests=concurrent_requests,
            )
        return cls(
            protocol=protocol,
            header_timeout_seconds=config.header_timeout_seconds,
            idle_timeout_seconds=config.idle_timeout_seconds,
            request_timeout_seconds=config.request_timeout_seconds,
            body_stall_timeout_seconds=config.body_stall_timeout_seconds,
        )
