"""A FastCGI Authorizer (§6.3) with HTTP Basic users: the web server asks it before serving
anything under a protected prefix (static files or another app), and passes the granted
AUTHZ_USER / AUTHZ_ROLE to the responder as params.

    python -m fcgigw --bind 127.0.0.1:9001 examples.authorizer.basic_auth:application
    python -m fcgigw --bind 127.0.0.1:9001 examples.authorizer.basic_auth:asgi_application

Users come from FCGIGW_EXAMPLE_USERS ("alice:secret:admin,bob:hunter2:reader"); only
salted PBKDF2 hashes are kept in memory. Server configurations: lighttpd.conf and
apache-authnz-fcgi.conf beside this file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from fcgigw.authorizer import Allow, AuthRequest, Deny, asgi_authorizer, wsgi_authorizer

REALM = "fcgigw example"
ITERATIONS = 100_000


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ITERATIONS)


def load_users(spec: str) -> dict[str, tuple[bytes, bytes, str]]:
    """user -> (salt, hash, role) from "user:password:role,..."."""
    users = {}
    for entry in filter(None, (item.strip() for item in spec.split(","))):
        user, password, role = entry.split(":", 2)
        salt = secrets.token_bytes(16)
        users[user] = (salt, _hash(password, salt), role)
    return users


USERS = load_users(os.environ.get("FCGIGW_EXAMPLE_USERS", "alice:secret:admin"))


def check(request: AuthRequest) -> Allow | Deny:
    if request.apache_role == "AUTHORIZER":
        # Apache's authorization phase: the user is already authenticated (REMOTE_USER).
        user = request.params.get("REMOTE_USER", "")
        if user in USERS:
            return Allow({"AUTHZ_ROLE": USERS[user][2]})
        return Deny(403)
    credentials = request.credentials()
    if credentials is None:
        return Deny.unauthorized(REALM, b"Log in to see this.\n")
    user, password = credentials
    known = USERS.get(user)
    if known is None or not hmac.compare_digest(_hash(password, known[0]), known[1]):
        return Deny.unauthorized(REALM, b"Wrong user name or password.\n")
    return Allow({"AUTHZ_USER": user, "AUTHZ_ROLE": known[2]})


application = wsgi_authorizer(check)
asgi_application = asgi_authorizer(check)
