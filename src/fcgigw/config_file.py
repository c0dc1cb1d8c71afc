"""--config FILE: settings from a TOML file, one server or several pools.

The keys are the long option names (dashes or underscores); ``[env]`` holds environment
variables for the app. Any number of ``[pool.NAME]`` tables make a file of pools, each its
own server with its own ``app``, ``bind``, ``user``, ``workers``… and ``[pool.NAME.env]``;
the top-level keys are every pool's defaults (php-fpm's pool.d/). Precedence, lowest first:
Config defaults, the file's top level, the pool's table, FCGIGW_* variables, the command
line. Every problem is one line naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .address import format_address, parse_address
from .config import Config, from_environment, parse_value, setting_fields
from .server.privileges import check_root, resolve

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the tests run on 3.11+
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

#: Settings that belong to the master of a file of pools, not to any one pool.
MASTER_ONLY = ("pid_file",)
POOL_NAME = re.compile(r"[A-Za-z0-9_-]+")
SETTINGS = {item.name: item for item in setting_fields()}
LIST_SETTINGS = ("bind", "allow_from", "roles")


class ConfigFileError(ValueError):
    """What is wrong with a file: one line per problem (``problems``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Pool:
    """One pool of a file: its settings and the environment variables its app gets."""

    name: str
    config: Config
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConfigFile:
    """A file read and validated: ``main`` is the one server's Config (no pools), or the
    master's (its pid_file and log_level) when ``pools`` is not empty."""

    path: str
    main: Config
    env: Mapping[str, str]
    pools: Mapping[str, Pool]


def read_config_file(path: str, cli: Mapping[str, Any], environ: Mapping[str, str]) -> ConfigFile:
    """Read and validate ``path``; ``cli`` holds the settings given on the command line.
    Raises ConfigFileError, or ValueError for a bad FCGIGW_* variable."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError([f"{path}: cannot read it: {error}"]) from None
    lines = KeyLines(text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigFileError([lines.syntax_error(path, str(error))]) from None
    return _Reader(path, lines, cli, from_environment(environ)).read(document)


class _Reader:
    """Turns a parsed document into Configs, collecting every problem on the way."""

    def __init__(
        self, path: str, lines: KeyLines, cli: Mapping[str, Any], env: Mapping[str, Any]
    ) -> None:
        self.path, self.lines, self.cli, self.env = path, lines, cli, env
        self.problems: list[str] = []

    def read(self, document: dict[str, Any]) -> ConfigFile:
        tables = document.pop("pool", {})
        if not isinstance(tables, dict):
            self.problem(("pool",), "want [pool.NAME] tables")
            tables = {}
        env = self.environment(document.pop("env", {}), ("env",))
        top = self.settings(document, ())
        # With pools, the top level is the master's and every pool's defaults: a problem in
        # it is reported once, by the pools that inherit it.
        main = self.config(top, {}, (), "master" if tables else "single")
        pools = {name: self.pool(name, table, top, env) for name, table in tables.items()}
        self.check_binds(pools)
        if self.problems or main is None or None in pools.values():
            raise ConfigFileError(list(dict.fromkeys(self.problems)))
        found = {name: pool for name, pool in pools.items() if pool is not None}
        return ConfigFile(self.path, main, env, found)

    def pool(self, name: str, table: Any, top: dict[str, Any], env: dict[str, str]) -> Pool | None:
        where = ("pool", name)
        if not POOL_NAME.fullmatch(name):
            self.problem(where, "a pool name is letters, digits, '-' and '_'")
            return None
        if not isinstance(table, dict):
            self.problem(where, "want a table: [pool.NAME]")
            return None
        pool_env = {**env, **self.environment(table.pop("env", {}), (*where, "env"))}
        own = self.settings(table, where)
        for setting in MASTER_ONLY:
            if setting in own:
                self.problem((*where, setting), "set it at the top level (the master's)")
        inherited = {k: v for k, v in top.items() if k not in MASTER_ONLY}
        config = self.config(inherited, own, where, "pool")
        if config is not None and not config.bind:
            self.problem(where, "bind is required (a pool adopts no fd 0 or systemd socket)")
            return None
        return None if config is None else Pool(name, config, pool_env)

    def settings(self, table: dict[str, Any], where: tuple[str, ...]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in SETTINGS:
                self.problem((*where, key), _unknown(key))
                continue
            try:
                values[name] = convert(name, value)
            except ValueError as error:
                self.problem((*where, key), str(error))
        return values

    def environment(self, table: Any, where: tuple[str, ...]) -> dict[str, str]:
        if not isinstance(table, dict):
            self.problem(where, "want a table of environment variables")
            return {}
        env: dict[str, str] = {}
        for key, value in table.items():
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                env[key] = str(value)
            else:
                self.problem((*where, key), f"want a string, got {value!r}")
        return env

    def config(
        self,
        top: dict[str, Any],
        own: dict[str, Any],
        where: tuple[str, ...],
        kind: str,
    ) -> Config | None:
        """The Config of a table (``own``) on the top level's defaults, under the
        environment and the command line. ``kind``: "pool", "single" (a file without
        pools) or "master" (the top level of a file of pools: it serves nothing, so its
        user and the root rule are the pools' business)."""
        try:
            config = Config(**{**top, **own, **self.env, **self.cli})
            if kind != "master":
                resolve(config)
                if kind == "pool" or config.workers:
                    check_root(config)
        except ValueError as error:
            self.setting_problem(str(error), top, own, where)
            return None
        return config

    def setting_problem(
        self, message: str, top: dict[str, Any], own: dict[str, Any], where: tuple[str, ...]
    ) -> None:
        """A Config error, told where the offending setting came from."""
        match = re.match(r"[a-z_]+", message)
        name = match.group() if match and match.group() in SETTINGS else ""
        if not name:
            self.problem(where, message)
            return
        message = message[len(name) :].lstrip(": ")
        if name in self.cli:
            self.problems.append(f"{self.path}: {name} (from the command line): {message}")
        elif name in self.env:
            variable = f"FCGIGW_{name.upper()}"
            self.problems.append(f"{self.path}: {name} (from {variable}): {message}")
        elif name in own:
            self.problem((*where, name), message)
        elif name in top:
            self.problem((name,), message)
        else:
            self.problem(where, f"{name}: {message}")

    def check_binds(self, pools: Mapping[str, Pool | None]) -> None:
        """Two pools cannot listen on one address (port 0 asks for a fresh port each)."""
        owners: dict[str, str] = {}
        for name, pool in pools.items():
            for address in pool.config.addresses if pool is not None else ():
                text = format_address(address)
                if address.kind == "tcp" and address.port == 0:
                    continue
                if text in owners:
                    self.problem(("pool", name, "bind"), f"{text} is pool {owners[text]}'s too")
                owners.setdefault(text, name)

    def problem(self, where: tuple[str, ...], message: str) -> None:
        line = self.lines.find(where)
        place = f"{self.path}:{line}" if line else self.path
        self.problems.append(f"{place}: {'.'.join(where) or '(top level)'}: {message}")


def convert(name: str, value: Any) -> Any:
    """A TOML value as the Config field's type; text goes through the CLI's parsers."""
    default = SETTINGS[name].default
    if name in LIST_SETTINGS and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"want a string or a list of strings, got {value!r}")
        value = ",".join(value)
    if isinstance(value, str) and (name == "socket_mode" or not isinstance(default, int)):
        try:
            if name == "bind":
                for text in parse_value(name, value):
                    parse_address(text, allow_fd=True)
            return parse_value(name, value)
        except ValueError as error:
            raise ValueError(str(error).removeprefix(f"{name}: ")) from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"want true or false, got {value!r}")
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        if name == "socket_mode" and not 0 <= value <= 0o777:
            raise ValueError(f'want an octal mode such as 0o660 or "660", got {value}')
        return value
    kind = "an integer" if isinstance(default, int) else "a string"
    if name in LIST_SETTINGS:
        kind = "a string or a list of strings"
    raise ValueError(f"want {kind}, got {value!r}")


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key.replace("-", "_"), SETTINGS, n=1)
    hint = f"; did you mean {close[0].replace('_', '-')!r}?" if close else ""
    return f"unknown setting{hint}"


class KeyLines:
    """Where each key and table is in the file's text, for messages about them (tomllib
    gives no positions for values). Keys are found by their dotted path, dashes read as
    underscores; an inline table's keys are found as the line of the table."""

    _PART_TEXT = r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'"""
    _PART = re.compile(_PART_TEXT)
    _HEADER = re.compile(r"^\s*\[\s*([^\[\]#]+?)\s*\]")
    _KEY = re.compile(rf"^\s*((?:{_PART_TEXT})(?:\s*\.\s*(?:{_PART_TEXT}))*)\s*=")

    def __init__(self, text: str) -> None:
        self.count = len(text.splitlines())
        self.paths: dict[tuple[str, ...], int] = {}
        self.keys: dict[int, tuple[str, ...]] = {}  # line number: the key set there
        self.duplicates: list[tuple[tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        in_string = False
        for number, line in enumerate(text.splitlines(), 1):
            quotes = line.count('"""') + line.count("'''")
            if in_string:
                in_string = quotes % 2 == 0
                continue
            header, key = self._HEADER.match(line), self._KEY.match(line)
            if header:
                table = self._parts(header.group(1))
                self.paths.setdefault(table, number)
            elif key:
                self._add((*table, *self._parts(key.group(1))), number)
                self.keys[number] = (*table, *self._parts(key.group(1)))
            in_string = quotes % 2 == 1

    def _parts(self, dotted: str) -> tuple[str, ...]:
        return tuple(part.strip("\"'").replace("-", "_") for part in self._PART.findall(dotted))

    def _add(self, path: tuple[str, ...], number: int) -> None:
        if path in self.paths:
            self.duplicates.append((path, number))
        self.paths.setdefault(path, number)

    def find(self, path: tuple[str, ...]) -> int:
        """The line of ``path``, else of its nearest enclosing table; 0 when unknown."""
        path = tuple(part.replace("-", "_") for part in path if part)
        while path:
            if path in self.paths:
                return self.paths[path]
            path = path[:-1]
        return 0

    def syntax_error(self, path: str, message: str) -> str:
        """tomllib's message with its position as ``FILE:LINE:`` (and the key, when the
        error is a key given twice, which tomllib places at the end of the document)."""
        if message.startswith("Cannot overwrite a value") and self.duplicates:
            key, line = self.duplicates[0]
            return f"{path}:{line}: {'.'.join(key)}: given twice"
        position = re.search(r" \(at line (\d+), column \d+\)$", message)
        end = message.endswith(" (at end of document)")
        line = int(position.group(1)) if position else self.count if end else 0
        message = re.sub(r" \(at (line \d+, column \d+|end of document)\)$", "", message)
        if line in self.keys:
            message = f"{'.'.join(self.keys[line])}: {message}"
        return f"{path}:{line}: {message}" if line else f"{path}: {message}"


def summary(loaded: ConfigFile) -> list[str]:
    """--check-config's one line per pool (or for the one server)."""
    if not loaded.pools:
        return [f"{loaded.path}: {_describe(loaded.main)}"]
    return [f"pool {pool.name}: {_describe(pool.config)}" for pool in loaded.pools.values()]


def _describe(config: Config) -> str:
    app = config.app or "the diagnostics page"
    where = ", ".join(config.bind) or "the socket it is given (or 127.0.0.1:9000)"
    processes = f"{config.workers} workers" if config.workers else "1 process"
    user = f"user {config.user}" if config.user else "the starting user"
    group = f", group {config.group}" if config.group else ""
    return f"{app} on {where}, {processes}, as {user}{group}"
