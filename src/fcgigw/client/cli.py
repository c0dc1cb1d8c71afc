"""``python -m fcgigw.client ADDR PATH``: one request, the body to stdout; for health checks.

Exit codes: 0 for a 1xx-3xx response, 1 for 4xx/5xx (or a refused request), 2 for bad usage,
3 when the connection fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..protocol import ProtocolStatus, Role
from .cgi import FastCGIResponse, build_params
from .connection import FastCGIClient, FastCGIError

EXIT_OK = 0
EXIT_HTTP_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
ROLES = {role.name.lower(): role for role in Role}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fcgigw.client",
        description="Send one request to a FastCGI application and print the response body.",
        epilog="Exit status: 0 for 1xx-3xx, 1 for 4xx/5xx or a refused request, 2 for bad "
        "usage, 3 when the connection fails.",
    )
    parser.add_argument("address", help="HOST:PORT, [IPV6]:PORT or unix:PATH")
    parser.add_argument("path", nargs="?", default="/", help="request path, with ?query")
    parser.add_argument("-X", "--request", dest="method", default=None, help="HTTP method")
    parser.add_argument("-d", "--data", help="request body; @FILE reads a file")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--role", choices=sorted(ROLES), default="responder")
    parser.add_argument("--data-file", help="FCGI_DATA stream for the filter role")
    parser.add_argument("--get-values", action="store_true", help="ask FCGI_GET_VALUES")
    parser.add_argument("-i", "--include", action="store_true", help="print status and headers")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    return parser


def _read_body(data: str | None) -> bytes:
    if data is None:
        return b""
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"header {line!r} is not 'Name: value'")
        headers.append((name.strip(), value.strip()))
    return headers


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        body = _read_body(args.data)
        headers = _headers(args.header)
        filter_data = _filter_data(args.data_file) if args.data_file else None
    except (OSError, ValueError) as error:
        print(f"fcgigw.client: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with FastCGIClient(args.address, timeout=args.timeout) as client:
            if args.get_values:
                values = client.get_values(
                    [b"FCGI_MAX_CONNS", b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"]
                )
                for name, value in values.items():
                    print(f"{name.decode()}={value.decode()}")
                return EXIT_OK
            response = _send(client, args, body, headers, filter_data)
    except (OSError, FastCGIError, ValueError) as error:
        print(f"fcgigw.client: {args.address}: {error}", file=sys.stderr)
        return EXIT_CONNECTION
    return _print(response, include=args.include)


def _send(
    client: FastCGIClient,
    args: argparse.Namespace,
    body: bytes,
    headers: list[tuple[str, str]],
    filter_data: tuple[bytes, int] | None,
) -> FastCGIResponse:
    method = args.method or ("POST" if args.data is not None else "GET")
    content_type = next((v for n, v in headers if n.lower() == "content-type"), None)
    if content_type is None and args.data is not None:
        content_type = "application/x-www-form-urlencoded"
    headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
    extra: list[tuple[str, str]] = []
    if filter_data is not None:
        # §6.4: a Filter learns the file's length and modification time from these params.
        extra = [
            ("FCGI_DATA_LENGTH", str(len(filter_data[0]))),
            ("FCGI_DATA_LAST_MOD", str(filter_data[1])),
        ]
    params = build_params(
        method,
        args.path,
        headers=headers,
        body_length=len(body),
        content_type=content_type,
        extra=extra,
    )
    data = filter_data[0] if filter_data is not None else None
    return client.request(params, body, role=ROLES[args.role], data=data)


def _filter_data(path: str) -> tuple[bytes, int]:
    """The file for the Filter role and its modification time (seconds since the epoch)."""
    with open(path, "rb") as file:
        return file.read(), int(os.fstat(file.fileno()).st_mtime)


def _print(response: FastCGIResponse, *, include: bool) -> int:
    if response.stderr:
        sys.stderr.buffer.write(response.stderr)
    if response.protocol_status != ProtocolStatus.REQUEST_COMPLETE:
        print(f"refused: {ProtocolStatus(response.protocol_status).name}", file=sys.stderr)
        return EXIT_HTTP_ERROR
    if include:
        lines = [f"Status: {response.status} {response.reason}"]
        lines += [f"{name}: {value}" for name, value in response.headers]
        sys.stdout.write("\n".join(lines) + "\n\n")
        sys.stdout.flush()
    sys.stdout.buffer.write(response.body)
    sys.stdout.buffer.flush()
    return EXIT_OK if 100 <= response.status < 400 else EXIT_HTTP_ERROR
