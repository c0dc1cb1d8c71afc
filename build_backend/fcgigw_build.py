"""fcgigw's PEP 517 build backend: setuptools, plus mypyc when the fast build is asked for.

``pip install fcgigw`` builds pure Python and needs no compiler. ``FCGIGW_COMPILE=1 pip
install .`` (or ``pip install . -C compile=1``) also brings mypy, whose mypyc compiles the
per-request modules listed in setup.py to C extensions from the same typed source; that needs
a C compiler and the Python headers. A compiled module behaves as its source does, and the
test suite runs against both builds (``tox -e compiled``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the hooks this backend leaves alone)

COMPILE_VARIABLE = "FCGIGW_COMPILE"
#: mypyc ships inside mypy. asgiref is there for mypy to type-check the modules the compiled
#: ones import (it is a dependency of fcgigw anyway).
COMPILE_REQUIREMENTS = ["mypy>=1.15", "asgiref>=3.6"]


def _compile_requested(config_settings: dict[str, Any] | None) -> bool:
    """Asked for by FCGIGW_COMPILE=1 or pip's ``-C compile=1``; setup.py reads the variable."""
    setting = str((config_settings or {}).get("compile", "")).lower()
    if setting in {"1", "true", "yes"}:
        os.environ[COMPILE_VARIABLE] = "1"
    return os.environ.get(COMPILE_VARIABLE, "") == "1"


@contextlib.contextmanager
def _without_compiling() -> Iterator[None]:
    """setuptools runs setup.py for requirements and metadata too: compile only the wheel."""
    saved = os.environ.pop(COMPILE_VARIABLE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[COMPILE_VARIABLE] = saved


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    compile_requested = _compile_requested(config_settings)
    with _without_compiling():
        requires = _setuptools.get_requires_for_build_wheel(config_settings)
    return [*requires, *COMPILE_REQUIREMENTS] if compile_requested else requires


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: dict[str, Any] | None = None
) -> str:
    with _without_compiling():
        return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    _compile_requested(config_settings)
    # setuptools reuses build/ in the tree: a stale extension from an earlier build (a module
    # compiled then, or another mypyc runtime) would go into this wheel and shadow the source.
    shutil.rmtree("build", ignore_errors=True)
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
