"""Protocol errors that say whose fault it is (as h11 does) and what follows from it."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: the FastCGI conversation cannot continue as it was going."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        #: Name of the setting that was exceeded, when a limit (not the spec) refused the input,
        #: so the operator knows which knob to turn.
        self.limit = limit


class RemoteProtocolError(ProtocolError):
    """The peer broke the FastCGI spec or one of our limits: close that connection only."""


class LocalProtocolError(ProtocolError):
    """We, or the application through us, misused the API: a bug, to be logged with a traceback."""
