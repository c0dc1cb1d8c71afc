"""fcgigw: serve WSGI and ASGI applications to web servers over FastCGI 1.0."""

__version__ = "0.1.0"
