"""--user, --group, --allow-root, --chdir and a config file's [env]: who the processes that
run the app are, and what they start with.

fcgigw binds its sockets first (as root, to reach /run or a port below 1024, and to give a
Unix socket to the web server's group), and only the processes that import the app switch
to the user: each worker under --workers or a pool, the one process without. The order is
php-fpm's and every daemon's: supplementary groups, then the group, then the user (setuid
last, because afterwards the other two are no longer allowed).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import Config
from ..digits import is_ascii_digits

logger = logging.getLogger("fcgigw.server")

ROOT_UID = 0


@dataclass(frozen=True)
class Credentials:
    """The ids a process switches to; ``user_name`` picks the supplementary groups (None: a
    bare uid or only --group, which leaves the group itself as the only one)."""

    uid: int
    gid: int
    user_name: str | None


def resolve(config: Config) -> Credentials | None:
    """--user and --group as ids (None: neither is given, stay who we are). ValueError with
    a one-line message names the setting when a name is unknown, when switching would need
    root and fcgigw does not have it, or when --chdir is not a directory."""
    if config.chdir and not os.path.isdir(config.chdir):
        raise ValueError(f"chdir: no directory {config.chdir!r}")
    if not config.user and not config.group:
        return None
    uid, gid, name = os.geteuid(), os.getegid(), None
    if config.user:
        entry = _user_entry(config.user)
        if entry is None:
            uid = int(config.user)
        else:
            uid, gid, name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if config.group:
        gid = _group_id(config.group)
    credentials = Credentials(uid, gid, name)
    if os.geteuid() != ROOT_UID and (uid, gid) != (os.geteuid(), os.getegid()):
        setting = "user" if uid != os.geteuid() else "group"
        raise ValueError(
            f"{setting}: switching to {getattr(config, setting)!r} needs root "
            f"(fcgigw runs as uid {os.geteuid()})"
        )
    return credentials


def _user_entry(user: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(int(user)) if is_ascii_digits(user) else pwd.getpwnam(user)
    except KeyError:
        if is_ascii_digits(user):
            return None  # a uid without a passwd entry (containers): allowed, as in php-fpm
        raise ValueError(f"user: no user {user!r}") from None


def _group_id(group: str) -> int:
    if is_ascii_digits(group):
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"group: no group {group!r}") from None


def check_root(config: Config) -> None:
    """Processes that serve requests do not run as root by accident: fcgigw started as root
    needs --user, or --allow-root to say it is meant (php-fpm refuses the same way)."""
    if config.allow_root:
        return
    credentials = resolve(config)
    uid = credentials.uid if credentials is not None else os.geteuid()
    if uid == ROOT_UID:
        raise ValueError(
            "user: the workers would run as root; give --user (e.g. --user www-data), "
            "or --allow-root if that is meant"
        )


def become_app_process(config: Config) -> None:
    """In a process about to import the app: switch to --user/--group, then enter --chdir.
    Called after the sockets are bound; the errors were found by resolve() at startup."""
    credentials = resolve(config)
    if credentials is not None:
        drop(credentials)
    if config.chdir:
        os.chdir(config.chdir)


def drop(credentials: Credentials) -> None:
    """Supplementary groups, group, user, in that order; a no-op for ids we already have."""
    if (credentials.uid, credentials.gid) == (os.geteuid(), os.getegid()) and (
        os.geteuid() != ROOT_UID
    ):
        return
    if credentials.user_name is not None:
        os.initgroups(credentials.user_name, credentials.gid)
    else:
        os.setgroups([credentials.gid])
    os.setgid(credentials.gid)
    os.setuid(credentials.uid)
    logger.info("running as uid %d, gid %d", credentials.uid, credentials.gid)


def apply_environment(env: Mapping[str, str]) -> None:
    """A config file's [env] (or a pool's), before the app is imported. PYTHONPATH also goes
    on sys.path, as if the interpreter had started with it."""
    os.environ.update(env)
    if env.get("PYTHONPATH"):
        entries = [entry for entry in env["PYTHONPATH"].split(os.pathsep) if entry]
        sys.path[:0] = [entry for entry in entries if entry not in sys.path]
