"""The pool master's file, read again on SIGHUP: either the file as it is now, with the
sockets its pools need open, or nothing changes (each error logged)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ..config import Config
from ..config_file import ConfigFile, Pool
from .listeners import BindError, ListenerSet

logger = logging.getLogger("fcgigw.pools")

#: Re-reads the file (on SIGHUP); raises ValueError (ConfigFileError) when it is wrong.
ReadFile = Callable[[], ConfigFile]


def owners(pools: Iterable[Pool]) -> list[tuple[str, Config]]:
    """The pools as owners of listeners (listeners.Owner)."""
    return [(pool.name, pool.config) for pool in pools]


def read_again(read_file: ReadFile, listeners: ListenerSet) -> ConfigFile | None:
    """SIGHUP: the file as it is now, its sockets open and its log level applied; None when
    it is wrong, and then the running pools keep serving."""
    try:
        loaded = read_file()
        if not loaded.pools:
            raise ValueError(f"{loaded.path}: no [pool.NAME] table left")
        listeners.open_for(owners(loaded.pools.values()))
    except (ValueError, BindError) as error:
        for line in str(error).splitlines():
            logger.error("SIGHUP: %s", line)
        logger.error("SIGHUP: nothing changed; the running pools keep serving")
        return None
    logging.getLogger("fcgigw").setLevel(loaded.main.log_level.upper())
    return loaded
