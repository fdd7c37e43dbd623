"""Topic patterns: an exact topic, or a prefix ending in ``*``.

Pure and generic over what a pattern routes to, so the rule (exact topics win
over prefixes, and among prefixes the longest) is tested without channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

from .errors import ConfigurationError

__all__ = ["Router"]

T = TypeVar("T")


class Router(Generic[T]):
    """Routes a topic to the value of the pattern that matches it best.

    Args:
        routes: ``pattern -> value``; a pattern is an exact topic such as
            ``"rooms:lobby"`` or a prefix ending in ``*`` such as ``"rooms:*"``.
        owner: named in the error for a bad pattern.

    Raises:
        ConfigurationError: for a pattern with ``*`` anywhere but at its end.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, routes: Mapping[str, T], owner: str = "channels") -> None:
        exact: dict[str, T] = {}
        prefixes: list[tuple[str, T]] = []
        for pattern, value in routes.items():
            if not isinstance(pattern, str) or "*" in pattern[:-1]:
                msg = (
                    f"{owner} has the pattern {pattern!r}: a topic pattern is "
                    "an exact topic or a prefix ending in '*', such as 'rooms:*'"
                )
                raise ConfigurationError(msg)
            if pattern.endswith("*"):
                prefixes.append((pattern[:-1], value))
            else:
                exact[pattern] = value
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._exact = exact
        self._prefixes = prefixes

    def match(self, topic: str) -> T | None:
        """The value routed for ``topic``, or None when no pattern matches."""
        found = self._exact.get(topic)
        if found is not None:
            return found
        for prefix, value in self._prefixes:
            if topic.startswith(prefix):
                return value
        return None
