"""Values the adapters work out from what comes again and again (the web server's params,
an app's response starts), remembered by what they were worked out from."""

from __future__ import annotations

from typing import Final, Generic, TypeVar

V = TypeVar("V")

#: The last key before any: equal to no key.
_NOTHING: Final = object()


class RecentValues(Generic[V]):
    """A bounded dict of values by key: it starts afresh when full (keys may be the client's
    or the app's choice). The last key found is checked first: its parts are new objects each
    request, and comparing them with the last key's costs less than hashing them. The last
    key and value are one tuple, replaced whole, so they always belong together (threads
    share it). An unhashable key (a bytearray in it) is never remembered: get() gives None
    and put() does nothing."""

    __slots__ = ("_entries", "_last", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        self._entries: dict[object, V] = {}
        self._last: tuple[object, V | None] = (_NOTHING, None)
        self._max_entries = max_entries

    def get(self, key: object) -> V | None:
        """The value for ``key``, or None."""
        last = self._last
        if key == last[0]:
            return last[1]
        try:
            value = self._entries.get(key)
        except TypeError:
            return None
        if value is not None:
            self._last = (key, value)
        return value

    def put(self, key: object, value: V) -> None:
        """Remember ``value`` for ``key``."""
        entries = self._entries
        if len(entries) >= self._max_entries:
            entries.clear()
        try:
            entries[key] = value
        except TypeError:
            return
        self._last = (key, value)
