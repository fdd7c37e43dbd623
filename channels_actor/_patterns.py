"""Payload patterns for the testing kit, after Elixir's map patterns.

``assert_push "ev", %{"a" => 1}`` in Phoenix matches any payload that has at
least the key ``"a"`` with value 1. A pattern here reads the same way:

- a mapping matches a mapping that has at least its keys, each value matched
  by the pattern under it (so nested mappings are subsets too);
- :class:`Exact` around a mapping also forbids other keys, at that level only
  (wrap a nested mapping in its own ``Exact`` to pin it too);
- a list or tuple matches a list or tuple of the same length, item by item;
- :data:`ANY` matches anything that is there (a key given ``ANY`` must exist);
- a class matches its instances; any other callable is a predicate;
- anything else must be equal (``==``).

:func:`mismatch` says where a payload first differs, as a short line whose
values are previews redacted as log lines are, since a failure message lands
in CI logs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from ._redact import REDACTED, Redactor, redactor

__all__ = ["ANY", "Exact", "describe", "mismatch"]


class _Anything:
    """The type of :data:`ANY`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


#: Matches any value (Elixir's ``_``).
ANY: Any = _Anything()


@dataclasses.dataclass(frozen=True)
class Exact:
    """A mapping pattern that allows no keys beyond its own (at its own level)."""

    pattern: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Exact({self.pattern!r})"


def mismatch(pattern: Any, actual: Any, show: Redactor | None = None) -> str | None:
    """``None`` when ``actual`` matches ``pattern``, else where and how it differs."""
    return _mismatch(pattern, actual, "payload", False, show or redactor())


def describe(pattern: Any, show: Redactor | None = None) -> str:
    """A short, redacted rendering of ``pattern`` for a failure message."""
    return (show or redactor()).preview(pattern)


def _mismatch(pattern: Any, actual: Any, path: str, secret: bool, show: Redactor) -> str | None:
    if pattern is ANY:
        return None
    if isinstance(pattern, Exact):
        return _mapping(pattern.pattern, actual, path, secret, show, exact=True)
    if isinstance(pattern, Mapping):
        return _mapping(pattern, actual, path, secret, show, exact=False)
    if isinstance(pattern, (list, tuple)):
        return _sequence(pattern, actual, path, secret, show)
    if isinstance(pattern, type):
        if isinstance(actual, pattern):
            return None
        return (
            f"{path}: expected an instance of {pattern.__name__}, got {_show(actual, secret, show)}"
        )
    if callable(pattern):
        return _predicate(pattern, actual, path, secret, show)
    if pattern == actual:
        return None
    return f"{path}: expected {_show(pattern, secret, show)}, got {_show(actual, secret, show)}"


def _mapping(
    pattern: Mapping[str, Any], actual: Any, path: str, secret: bool, show: Redactor, *, exact: bool
) -> str | None:
    if not isinstance(actual, Mapping):
        return f"{path}: expected a mapping, got {_show(actual, secret, show)}"
    for key, sub in pattern.items():
        where = f"{path}[{show.preview(key, 40)}]"
        if key not in actual:
            return f"{where}: missing (keys: {show.preview(sorted(map(str, actual)))})"
        found = _mismatch(sub, actual[key], where, secret or show.is_secret(key), show)
        if found is not None:
            return found
    if exact:
        extra = [key for key in actual if key not in pattern]
        if extra:
            return f"{path}: unexpected keys {show.preview(sorted(map(str, extra)))}"
    return None


def _sequence(
    pattern: list[Any] | tuple[Any, ...], actual: Any, path: str, secret: bool, show: Redactor
) -> str | None:
    if not isinstance(actual, (list, tuple)) or len(actual) != len(pattern):
        expected = f"a list of {len(pattern)}"
        return f"{path}: expected {expected}, got {_show(actual, secret, show)}"
    for index, (sub, item) in enumerate(zip(pattern, actual, strict=True)):
        found = _mismatch(sub, item, f"{path}[{index}]", secret, show)
        if found is not None:
            return found
    return None


def _predicate(
    pattern: Callable[[Any], Any], actual: Any, path: str, secret: bool, show: Redactor
) -> str | None:
    name = getattr(pattern, "__name__", type(pattern).__name__)
    try:
        if pattern(actual):
            return None
    except Exception as exc:  # a predicate that cannot take the value does not match it
        return (
            f"{path}: predicate {name} raised {type(exc).__name__} on {_show(actual, secret, show)}"
        )
    return f"{path}: predicate {name} is false for {_show(actual, secret, show)}"


def _show(value: Any, secret: bool, show: Redactor) -> str:
    """A value under a secret key is never shown, even when it is a bare string."""
    return REDACTED if secret else show.preview(value)
