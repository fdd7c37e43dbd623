"""Pick a serializer from the ``vsn`` query parameter a client connects with.

Phoenix matches ``vsn`` against ``[{V1, "~> 1.0.0"}, {V2, "~> 2.0.0"}]`` with
Elixir's ``Version.match?`` and refuses the connection (HTTP 403) when nothing
matches. We reproduce exactly that matching, without a general SemVer library:
``~> M.0.0`` means ``>= M.0.0 and < M.1.0`` where pre-releases inside the range
match (``2.0.1-rc.1``) but a pre-release of the lower bound does not
(``2.0.0-rc.1`` < ``2.0.0``); build metadata (``+build``) is ignored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from .v1_json import V1JSONSerializer
from .v2_json import V2JSONSerializer

if TYPE_CHECKING:
    from .base import Serializer

__all__ = ["for_vsn"]

# Serializers are stateless: every connection shares these.
_V1 = V1JSONSerializer()
_V2 = V2JSONSerializer()

#: (major, serializer) for each "~> major.0.0" requirement, in Phoenix's order.
_REQUIREMENTS: tuple[tuple[int, Serializer], ...] = ((1, _V1), (2, _V2))

# Elixir's Version.Parser rules: numbers without leading zeros; pre-release and
# build identifiers are non-empty [0-9A-Za-z-] separated by dots. ASCII only.
_NUMBER = r"(?:0|[1-9][0-9]*)"
_IDENTIFIERS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(
    rf"(?P<major>{_NUMBER})\.(?P<minor>{_NUMBER})\.(?P<patch>{_NUMBER})"
    rf"(?:-(?P<pre>{_IDENTIFIERS}))?(?:\+{_IDENTIFIERS})?",
    re.ASCII,
)
_LEADING_ZERO = re.compile(r"0[0-9]+", re.ASCII)


class _Version(NamedTuple):
    major: int
    minor: int
    patch: int
    prerelease: bool


def for_vsn(vsn: str) -> Serializer | None:
    """Return the serializer for a client's ``vsn``, or ``None`` to refuse it.

    ``"1.0.x"`` gives the V1 serializer, ``"2.0.x"`` the V2 one; anything else
    (``"2.1.0"``, ``"3.0.0"``, ``"abc"``, ``""``) is ``None`` and the caller
    answers 403. A missing ``vsn`` is the caller's business: Phoenix treats it
    as ``"1.0.0"``.
    """
    version = _parse(vsn)
    if version is None:
        return None
    for major, serializer in _REQUIREMENTS:
        if _matches_minor_zero(version, major):
            return serializer
    return None


def _parse(vsn: str) -> _Version | None:
    match = _VERSION.fullmatch(vsn)
    if match is None:
        return None
    pre = match["pre"]
    if pre is not None and any(_LEADING_ZERO.fullmatch(part) for part in pre.split(".")):
        return None  # numeric pre-release identifiers must not have leading zeros
    return _Version(int(match["major"]), int(match["minor"]), int(match["patch"]), pre is not None)


def _matches_minor_zero(version: _Version, major: int) -> bool:
    """``Version.match?(version, "~> major.0.0")`` (pre-releases allowed)."""
    if version.major != major or version.minor != 0:
        return False
    return version.patch > 0 or not version.prerelease
