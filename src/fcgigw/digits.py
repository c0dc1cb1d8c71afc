"""Telling a number from text that only looks like one."""

from __future__ import annotations

from typing import Final

#: More digits than any length, port or id needs (and int() refuses over 4300 of them).
MAX_DIGITS: Final = 18


def is_ascii_digits(text: str) -> bool:
    """1 to MAX_DIGITS of 0-9. ``str.isdigit`` also accepts ``²`` and other digits that
    ``int()`` refuses or reads differently; params are latin-1 text from the wire, so that
    check is not enough."""
    return len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()
