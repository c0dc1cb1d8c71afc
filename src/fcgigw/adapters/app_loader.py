"""Find the application named on the command line, and tell WSGI from ASGI."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from typing import Any

from asgiref.compatibility import guarantee_single_callable


class AppLoadError(Exception):
    """The application could not be imported; the message is one line for the operator, and
    ``__cause__`` the error raised by the app's own code, if any (its traceback helps)."""


def import_app(spec: str, *, factory: bool = False) -> Any:
    """Import ``module:attribute`` (attribute may be dotted), with the cwd on sys.path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppLoadError(f"APP must look like module:attribute, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        # Like gunicorn and uvicorn: the app next to where you run the command is found.
        sys.path.insert(0, cwd)
    target = _import_module(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        try:
            target = target()
        except Exception as error:
            raise AppLoadError(f"the factory {spec} failed: {_one_line(error)}") from error
    if not callable(target):
        raise AppLoadError(f"{spec} is not callable (a {type(target).__name__})")
    return target


def _import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        if error.name and module_name.startswith(error.name):
            raise AppLoadError(f"cannot import module {module_name!r}: {error}") from None
        raise AppLoadError(f"importing {module_name!r} failed: {_one_line(error)}") from error
    except SyntaxError as error:
        if not _in_source_file(error):
            raise AppLoadError(f"importing {module_name!r} failed: {_one_line(error)}") from error
        # The compiler's own report (file, line, the line with a caret, the message) says it
        # all; the traceback would only add importlib's frames and the same lines again.
        report = "".join(traceback.format_exception_only(error)).rstrip("\n")
        raise AppLoadError(f"importing {module_name!r} failed:\n{report}") from None
    except Exception as error:
        # The app's own code failed (a missing setting): same exit code, so a supervisor stops
        # rather than restarting it in a loop; the traceback is logged.
        raise AppLoadError(f"importing {module_name!r} failed: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    """``NameError: name 'x' is not defined``: the last line of a traceback, not a repr."""
    return traceback.format_exception_only(error)[-1].strip()


def _in_source_file(error: SyntaxError) -> bool:
    """True for a module's source that does not compile, as opposed to a SyntaxError the
    app's code raised itself (compile() or ast.parse() of a string: "<string>", "<unknown>"),
    whose traceback shows where."""
    return bool(error.filename) and not str(error.filename).startswith("<")


def detect_interface(app: Any) -> str:
    """ "asgi" for ``async def app(scope, receive, send)``, an object whose ``__call__`` is a
    coroutine function, or an ASGI 2 class (instantiated with the scope, then awaited with
    receive and send); else "wsgi"."""
    if inspect.iscoroutinefunction(app):
        return "asgi"
    if inspect.isclass(app):
        call = inspect.getattr_static(app, "__call__", None)  # the instances' __call__, via MRO
        return "asgi" if inspect.iscoroutinefunction(call) else "wsgi"
    if not inspect.isroutine(app) and inspect.iscoroutinefunction(type(app).__call__):
        return "asgi"
    return "wsgi"


def as_asgi3(app: Any) -> Any:
    """ASGI 2 double-callables become ASGI 3 single callables (asgiref's own adapter)."""
    return guarantee_single_callable(app)  # type: ignore[no-untyped-call]
