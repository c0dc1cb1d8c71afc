"""The package's shape: the protocol core stays free of I/O, classes stay small, and what we
ship is complete."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "fcgigw"
#: Modules that do I/O, threads, time or processes: none may be imported by fcgigw.protocol.
FORBIDDEN = frozenset(
    {"socket", "select", "selectors", "threading", "asyncio", "os", "time", "io", "subprocess"}
    | {"signal", "multiprocessing", "ssl", "tempfile", "logging", "concurrent"}
)


def imported_modules(source: str, package: str) -> set[str]:
    """Top-level names of every module ``source`` imports (relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module or ""]).split(".")[0])
            else:
                found.add((node.module or "").split(".")[0])
    return found


def test_the_check_catches_io_imports() -> None:
    """Positive control: the same check flags I/O imports, plain and from-imports."""
    assert "socket" in imported_modules("import socket\n", "fcgigw.protocol")
    assert "threading" in imported_modules("from threading import Lock\n", "fcgigw.protocol")
    assert "os" in imported_modules("import os.path\n", "fcgigw.protocol")


def test_protocol_core_imports_no_io() -> None:
    modules = sorted(PACKAGE.joinpath("protocol").glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        bad = imported_modules(module.read_text(), "fcgigw.protocol") & FORBIDDEN
        assert not bad, (
            f"{module.relative_to(ROOT)} imports {sorted(bad)}: keep I/O out of protocol/"
        )


#: What the connection core may not import: it decides, the backends do I/O and keep time.
CORE_FORBIDDEN = FORBIDDEN - {"logging"}


@pytest.mark.parametrize("name", ["core.py", "core_life.py", "core_request.py", "core_requests.py"])
def test_connection_core_imports_no_io(name: str) -> None:
    module = PACKAGE / "server" / name
    bad = imported_modules(module.read_text(), "fcgigw.server") & CORE_FORBIDDEN
    assert not bad, f"server/{name} imports {sorted(bad)}: keep I/O in the backends"


def test_the_server_package_has_no_import_cycle() -> None:
    """Modules of fcgigw.server import each other one way only (issue 14's rule)."""
    graph: dict[str, set[str]] = {}
    for module in PACKAGE.joinpath("server").glob("*.py"):
        tree = ast.parse(module.read_text())
        graph[module.stem] = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
        } - {module.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for name in graph.get(start, set()) - seen:
            if name == goal or reaches(name, goal, seen | {name}):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert not cycles, f"import cycles through {cycles}"


#: Issue 14's "no class over ~150 lines" for the packages every request runs through,
#: held within a tenth of it: a class that grows past this has more than one job.
MAX_CLASS_LINES = 165


def class_lengths(source: str) -> dict[str, int]:
    """Lines of each class in ``source``, its decorators and docstring included."""
    return {
        node.name: (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
    }


def test_the_class_length_check_counts_every_line() -> None:
    """Positive control: a class's body, nested blocks and docstring all count."""
    source = 'class A:\n    """Doc."""\n\n    def f(self):\n        if 1:\n            pass\n'
    assert class_lengths(source) == {"A": 6}


@pytest.mark.parametrize("package", ["protocol", "server"])
def test_no_class_is_over_about_150_lines(package: str) -> None:
    long = {
        f"{module.name}:{name}": length
        for module in sorted(PACKAGE.joinpath(package).glob("*.py"))
        for name, length in class_lengths(module.read_text()).items()
        if length > MAX_CLASS_LINES
    }
    assert not long, f"classes over {MAX_CLASS_LINES} lines in {package}/: {long}; split them"


def test_py_typed_is_shipped() -> None:
    assert (PACKAGE / "py.typed").exists()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["fcgigw"]


@pytest.mark.parametrize("script", ["fcgigw"])
def test_console_script_points_at_a_callable(script: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, attribute = project["project"]["scripts"][script].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


# -- what mypyc compiles wrong ---------------------------------------------------------------
# The fast build compiles the same source with mypyc (setup.py). mypyc 2.4 gets two shapes
# wrong, both found by running the suite compiled: a slice bound is evaluated twice (so
# ``view[sock.send(view):]`` sends twice), and a tuple assignment whose right side reads one
# of its own targets can see that target's new type (``a, b = "", a or ""`` raised TypeError).


def mypyc_hazards(source: str) -> list[str]:
    """The lines of ``source`` with a call in a slice bound (``len()`` is pure: allowed), or
    a tuple assignment that reads one of its targets (a plain swap of names is fine)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper, node.step):
                calls = [n for n in ast.walk(bound) if isinstance(n, ast.Call)] if bound else []
                if any(not (isinstance(c.func, ast.Name) and c.func.id == "len") for c in calls):
                    found.append(f"line {node.lineno}: a call in a slice bound")
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            targets = {t.id for t in node.targets[0].elts if isinstance(t, ast.Name)}
            value = node.value
            if not isinstance(value, ast.Tuple) or all(isinstance(e, ast.Name) for e in value.elts):
                continue  # a call's result is whole before the assignment; a swap is fine
            read = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
            if targets & read:
                names = sorted(targets & read)
                found.append(f"line {node.lineno}: a tuple assignment reads {names}")
    return found


def test_the_mypyc_check_catches_both_shapes() -> None:
    """Positive control, with the two lines the compiled suite caught."""
    assert mypyc_hazards("view = view[sock.send(view, 0) :]\n")
    assert mypyc_hazards("script_name, path_info = '', script_name or ''\n")
    assert not mypyc_hazards("a, b = b, a\nrest = data[len(prefix) :]\n")


def test_no_source_has_a_shape_mypyc_compiles_wrong() -> None:
    hazards = {
        str(module.relative_to(ROOT)): mypyc_hazards(module.read_text())
        for module in sorted(PACKAGE.rglob("*.py"))
    }
    assert {name: lines for name, lines in hazards.items() if lines} == {}
