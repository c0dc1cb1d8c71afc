"""The two builds: pure Python (the default, no compiler needed) and mypyc-compiled.

tox's py3 environment runs the suite on the pure build and its compiled environment on the
compiled one; FCGIGW_EXPECT_BUILD says which each expects, so a compiled run that silently
fell back to pure Python fails here instead of passing for the wrong build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from servers import REPO, fcgigw_command

import fcgigw
from fcgigw.protocol import framing
from fcgigw.server import core, thread_reader

EXPECTED_BUILD = os.environ.get("FCGIGW_EXPECT_BUILD", "")


@pytest.mark.skipif(not EXPECTED_BUILD, reason="FCGIGW_EXPECT_BUILD is set by tox's environments")
def test_the_build_under_test_is_the_one_tox_asked_for() -> None:
    modules = (framing, core, thread_reader)
    compiled = [not module.__file__.endswith(".py") for module in modules]  # type: ignore[union-attr]
    assert compiled == [EXPECTED_BUILD == "compiled"] * len(modules)
    assert fcgigw.compiled() is (EXPECTED_BUILD == "compiled")


def test_version_says_which_build_runs() -> None:
    result = subprocess.run(
        [*fcgigw_command("--version")], capture_output=True, text=True, check=True, timeout=30
    )
    build = "compiled by mypyc" if fcgigw.compiled() else "pure Python"
    assert result.stdout.strip() == f"fcgigw {fcgigw.__version__} ({build})"


def test_the_default_build_needs_no_compiler(tmp_path: Path) -> None:
    """``pip install fcgigw`` on a machine without a C compiler: a pure-Python wheel."""
    tree = tmp_path / "tree"  # a copy: the build writes build/ and egg-info into its tree
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, tree / name)
    for name in ("build_backend", "src"):
        shutil.copytree(REPO / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    environ = {k: v for k, v in os.environ.items() if k != "FCGIGW_COMPILE"}
    environ["CC"] = environ["CXX"] = "/bin/false"  # any compiler call would fail the build
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(tree),
        ],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("fcgigw-*.whl")
    assert "none-any" in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "fcgigw/server/core.py" in names
    assert not [name for name in names if name.endswith(".so")]
