"""A hosting account for web servers that start the app as their own user (Apache mod_fcgid
runs it as www-data when started as root, as on a real host).

www-data may not be able to run the test's own interpreter (pyenv keeps it under /root, which
is mode 700) nor read the repository. So an account is a world-readable temporary directory
with a "virtualenv" made of copies of fcgigw and the third-party packages the apps import
(found by importing them in a subprocess), and the first interpreter www-data can run: the
test's own, else /usr/bin/python3. PYTHONPATH reaches it through the server's config
(FcgidInitialEnv), just as a virtualenv's python finds its site-packages. Nothing outside the
temporary directory changes permissions. Copying beats ``pip install --target`` here: no
network, same versions.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import PACKAGE_ROOT, child_environment, short_tempdir

WEB_USER = "www-data"
TIMEOUT = 20

#: Imports the modules named in argv[1] (comma-separated) with argv[2:] first on sys.path,
#: then prints the site-packages entries that provided the modules loaded (packages and
#: single-file modules).
VENDOR_PROBE = """
import importlib, json, os, site, sys
sys.path[:0] = sys.argv[2:]
for name in sys.argv[1].split(","):
    importlib.import_module(name)
roots = [os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
found = set()
for module in list(sys.modules.values()):
    path = os.path.realpath(getattr(module, "__file__", None) or "/")
    for root in roots:
        if path.startswith(root + os.sep):
            found.add(os.path.join(root, os.path.relpath(path, root).split(os.sep)[0]))
print(json.dumps(sorted(found)))
"""


@dataclass
class Account:
    """A hosting account in a temporary directory that the web server's user can read."""

    root: Path
    python: str  # an interpreter the web server's user can run
    lib: Path  # fcgigw and the apps' packages: the "virtualenv"
    run_dir: Path  # for Apache's pid file and mod_fcgid's sockets

    def environment(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.lib)}


def runs_as_web_user() -> bool:
    """Apache switches to User only when started as root."""
    return os.geteuid() == 0


def readable_by_all(root: Path) -> None:
    """chmod a+rX below ``root`` (mkdtemp makes it 700, copies keep their source's mode)."""
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o444 | (0o111 if path.is_dir() or mode & 0o100 else 0))


def usable_python(python: str, root: Path, lib: Path, packages: str) -> bool:
    """Can the web server's user run ``python`` and import ``packages`` (``"fcgigw, flask"``)
    from ``lib`` with it?"""
    user = WEB_USER if runs_as_web_user() else None
    try:
        result = subprocess.run(
            [python, "-c", f"import sys, {packages}; sys.exit(sys.version_info < (3, 10))"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)},
            cwd=root,
            user=user,
            group=user,
            extra_groups=[] if user else None,  # not root's supplementary groups
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except OSError:
        return False
    return result.returncode == 0


def vendor(
    lib: Path, modules: Sequence[str], paths: Sequence[Path], env: dict[str, str] | None = None
) -> None:
    """Copy fcgigw and the site-packages entries that importing ``modules`` (found on
    ``paths``) loads into ``lib``."""
    probe = subprocess.run(
        [sys.executable, "-c", VENDOR_PROBE, ",".join(modules), *map(str, paths)],
        env=child_environment() | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ignore = shutil.ignore_patterns("__pycache__")
    # The fcgigw under test, as a user would copy it: the compiled build's modules need the
    # mypyc runtime that sits beside the package (README, "Speed").
    shutil.copytree(PACKAGE_ROOT / "fcgigw", lib / "fcgigw", ignore=ignore)
    for runtime in PACKAGE_ROOT.glob("*__mypyc*"):
        shutil.copy(runtime, lib / runtime.name)
    for entry in map(Path, json.loads(probe.stdout)):
        if entry.name == "fcgigw":
            continue
        if entry.is_dir():
            shutil.copytree(entry, lib / entry.name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy(entry, lib / entry.name)


@contextlib.contextmanager
def hosting_account(
    modules: Sequence[str],
    paths: Sequence[Path],
    packages: str,
    populate: Callable[[Path], None],
    env: dict[str, str] | None = None,
) -> Iterator[Account]:
    """An account whose lib holds what importing ``modules`` needs; ``populate(root)`` adds
    the apps. Skips the test when there is no web user or no interpreter it can run."""
    if runs_as_web_user():
        try:
            pwd.getpwnam(WEB_USER)
        except KeyError:
            pytest.skip(
                f"no {WEB_USER} user for Apache to run the app as (apt-get install apache2)"
            )
    root = Path(short_tempdir())
    try:
        lib, run_dir = root / "lib", root / "run"
        for directory in (lib, run_dir):
            directory.mkdir()
        vendor(lib, modules, paths, env)
        populate(root)
        readable_by_all(root)
        candidates = [sys.executable, "/usr/bin/python3"]
        python = next((p for p in candidates if usable_python(p, root, lib, packages)), None)
        if python is None:
            pytest.skip(f"no Python >= 3.10 that {WEB_USER} can run (tried {candidates})")
        yield Account(root, python, lib, run_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)
