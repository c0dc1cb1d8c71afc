"""A FastCGI client on the same protocol core as the server: library, CLI
(``python -m fcgigw.client``) and a WSGI proxy for WebTest."""

from .cgi import FastCGIResponse, build_params, parse_cgi_response
from .connection import FastCGIClient, FastCGIError, connect

__all__ = [
    "FastCGIClient",
    "FastCGIError",
    "FastCGIResponse",
    "build_params",
    "connect",
    "parse_cgi_response",
]
