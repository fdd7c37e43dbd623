"""Making any value safe to log: a short, bounded preview with secrets redacted.

Log lines and exception messages show what a client or a callback sent, and
both may be large or carry credentials. :meth:`Redactor.preview` renders a
value the way ``repr`` would, but:

- it stops after ``limit`` characters and says how big the value was
  (``'{"a": ...' ... (a string of 7340032 characters)``), so a megabyte topic logs a line, not a
  megabyte; it walks only as much of the value as it shows, so previewing a
  huge payload costs about as much as a small one;
- in mappings (and dataclasses and named tuples), the value of every key whose
  name contains a secret word is replaced by ``[REDACTED]``; the words match
  case-insensitively and ignoring ``_``, ``-`` and spaces, so ``"token"``
  also catches ``auth_token`` and ``X-Auth-Token``;
- in text (``str`` and ``bytes``: a malformed frame, a query string, a
  header, a ``repr``), the value after ``secret_key":``, ``secret_key=`` or
  ``secret_key:`` is replaced before the text is cut, quoted or not, even when
  the cut falls inside the value.

Text is scanned by a regular expression, so a key spelled with JSON escapes
(``"pass\\u0077ord"``) is not recognised; decoded payloads are redacted by key
and have no such gap.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "PREVIEW_LIMIT",
    "REDACTED",
    "Redactor",
    "preview",
    "preview_broadcast",
    "redactor",
    "redactor_for",
    "shape_of",
]

#: Key names whose values never reach a log line (substrings, case-insensitive).
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "private_key",
    "credential",
    "session",
)

#: Characters of a value a preview shows before it is cut.
PREVIEW_LIMIT = 80

REDACTED = "[REDACTED]"

# Containers nested deeper than this show as "...": a preview is a glimpse.
_MAX_DEPTH = 6
_IGNORED = re.compile(r"[-_\s]")
_GENERATED_REPR_FILES = ("dataclasses.py", "reprlib.py")


def _normalize(name: str) -> str:
    return _IGNORED.sub("", name).lower()


class _Full(Exception):
    """The preview has all the characters it may show."""


class _Out:
    """Collects at most ``room`` characters, then raises :class:`_Full`."""

    __slots__ = ("cut", "parts", "room")

    def __init__(self, room: int) -> None:
        self.parts: list[str] = []
        self.room = room
        self.cut = False

    def write(self, text: str) -> None:
        if len(text) > self.room:
            self.parts.append(text[: self.room])
            self.room = 0
            self.cut = True
            raise _Full
        self.parts.append(text)
        self.room -= len(text)


class Redactor:
    """Renders values for logs: bounded, with the values of secret keys redacted.

    Args:
        keys: words that mark a key as secret; matched case-insensitively as
            substrings of the key name, ignoring ``_``, ``-`` and spaces.
        limit: the characters a preview shows before it is cut.
    """

    __slots__ = ("_bytes_pattern", "_text_pattern", "_words", "keys", "limit")

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACT_KEYS, limit: int = PREVIEW_LIMIT):
        self.keys = tuple(keys)
        self.limit = limit
        self._words = tuple(word for word in map(_normalize, self.keys) if word)
        pattern = _text_pattern(self._words)
        self._text_pattern = re.compile(pattern, re.IGNORECASE) if pattern else None
        self._bytes_pattern = re.compile(pattern.encode(), re.IGNORECASE) if pattern else None

    def __repr__(self) -> str:
        return f"Redactor(keys={self.keys!r}, limit={self.limit})"

    def is_secret(self, key: object) -> bool:
        """Whether values under ``key`` (a str or bytes key name) are redacted."""
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            return False
        name = _normalize(key)
        return any(word in name for word in self._words)

    def scrub(self, text: str) -> str:
        """``text`` with the value after each secret key (``token=...``) redacted."""
        if self._text_pattern is None:
            return text
        return self._text_pattern.sub(_replace_text, text)

    def scrub_bytes(self, data: bytes) -> bytes:
        """``data`` with the value after each secret key redacted."""
        if self._bytes_pattern is None:
            return data
        return self._bytes_pattern.sub(_replace_bytes, data)

    def clip(self, text: str, limit: int | None = None) -> str:
        """``text`` as is (no quotes), redacted and cut to ``limit`` characters
        (the redactor's own by default) with ``... (a string of N characters)``: for exception
        messages and other text that is already meant to be read."""
        limit = self.limit if limit is None else limit
        scanned = _scanned(limit)
        head = self.scrub(text[:scanned])
        if len(head) <= limit and len(text) <= scanned:
            return head
        return f"{head[:limit]}... ({shape_of(text)})"

    def preview(self, value: object, limit: int | None = None) -> str:
        """A ``repr``-like rendering of ``value``: at most ``limit`` characters
        (the redactor's own by default) plus ``... (size)`` when cut, with
        secrets redacted. Never raises."""
        out = _Out(self.limit if limit is None else limit)
        try:
            self._render(value, out, 0)
        except _Full:
            pass
        except Exception:  # a broken __repr__ must not break a log line
            return f"<{type(value).__name__} (cannot be shown)>"
        text = "".join(out.parts)
        if out.cut:
            return f"{text}... ({shape_of(value)})"
        return text

    # rendering ----------------------------------------------------------------

    def _render(self, value: Any, out: _Out, depth: int) -> None:
        if isinstance(value, str):
            self._render_text(value, out)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._render_bytes(value, out)
        elif value is None or isinstance(value, (bool, float)):
            out.write(repr(value))
        elif isinstance(value, int):
            out.write(_int_repr(value))
        elif depth >= _MAX_DEPTH:
            out.write("...")
        elif isinstance(value, Mapping):
            self._render_items(value.items(), "{", "}", out, depth)
        elif isinstance(value, tuple) and hasattr(value, "_fields"):
            named = zip(value._fields, value, strict=False)
            self._render_fields(type(value).__name__, named, out, depth)
        elif _has_generated_repr(value):
            pairs = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            self._render_fields(type(value).__name__, pairs, out, depth)
        elif isinstance(value, (list, tuple, set, frozenset)):
            self._render_sequence(value, out, depth)
        else:
            self._render_text_repr(repr(value), out)

    def _render_text(self, value: str, out: _Out) -> None:
        head = value[: _scanned(out.room)]
        shown = repr(self.scrub(head))
        if len(head) < len(value):
            out.write(shown[:-1])  # no closing quote: there is more
            out.cut = True
            raise _Full
        out.write(shown)

    def _render_bytes(self, value: bytes | bytearray | memoryview, out: _Out) -> None:
        head = bytes(value[: _scanned(out.room)])
        shown = repr(self.scrub_bytes(head))
        if len(head) < len(value):
            out.write(shown[:-1])
            out.cut = True
            raise _Full
        out.write(shown)

    def _render_text_repr(self, text: str, out: _Out) -> None:
        scanned = _scanned(out.room)
        out.write(self.scrub(text[:scanned]))
        if len(text) > scanned:
            out.cut = True
            raise _Full

    def _render_items(
        self, items: Iterable[tuple[Any, Any]], opening: str, closing: str, out: _Out, depth: int
    ) -> None:
        out.write(opening)
        for index, (key, item) in enumerate(items):
            if index:
                out.write(", ")
            self._render(key, out, depth + 1)
            out.write(": ")
            if self.is_secret(key):
                out.write(repr(REDACTED))
            else:
                self._render(item, out, depth + 1)
        out.write(closing)

    def _render_fields(
        self, name: str, pairs: Iterable[tuple[str, Any]], out: _Out, depth: int
    ) -> None:
        out.write(f"{name}(")
        for index, (key, item) in enumerate(pairs):
            if index:
                out.write(", ")
            out.write(f"{key}=")
            if self.is_secret(key):
                out.write(repr(REDACTED))
            else:
                self._render(item, out, depth + 1)
        out.write(")")

    def _render_sequence(self, value: Any, out: _Out, depth: int) -> None:
        if isinstance(value, list):
            opening, closing = "[", "]"
        elif isinstance(value, tuple):
            opening, closing = "(", ",)" if len(value) == 1 else ")"
        elif not value:
            out.write(f"{type(value).__name__}()")
            return
        else:
            opening, closing = "{", "}"
        out.write(opening)
        for index, item in enumerate(value):
            if index:
                out.write(", ")
            self._render(item, out, depth + 1)
        out.write(closing)


def _scanned(room: int) -> int:
    """How much text to scrub to fill ``room`` characters.

    Only text that is scrubbed is shown, so this is about a full preview, not
    about safety: a value cut at the end of the scan still matches (an
    unterminated string, a bare run), and a key cut there shows no value.
    Redacting shortens the text, so scan somewhat more than fits.
    """
    return room * 2 + 64


def _text_pattern(words: tuple[str, ...]) -> str:
    """The regular expression finding ``<secret key><separator><value>`` in text."""
    if not words:
        return ""
    # Each word may be spelled with "_", "-" or spaces between its letters.
    spelled = "|".join(r"[-_ ]?".join(map(re.escape, word)) for word in words)
    key = rf"(?:{spelled})[\w.-]*(?:\\?[\"'])?"
    # A bare "key:value" is not a pair ("session:lobby" is a topic): a colon
    # needs a quoted key, a quoted value or a space after it ("Cookie: a").
    separator = r"\s*(?:=>|=)\s*|(?<=[\"'])\s*:\s*|\s*:\s+|:(?=[\"'])"
    value = (
        r"\"(?:[^\"\\]|\\.)*(?:\"|\Z)"  # "double", possibly cut
        r"|'(?:[^'\\]|\\.)*(?:'|\Z)"  # 'single'
        r"|\\\"(?:(?!\\\")[\s\S])*(?:\\\"|\Z)"  # \"escaped\", JSON inside a string
        r"|(?:(?:bearer|basic|digest|token)\s+)?[^\s&,;})\]>\"'\\]*"  # bare: query, header
    )
    return rf"(?P<key>{key}(?:{separator}))(?:{value})"


def _replace_text(match: re.Match[str]) -> str:
    return match["key"] + REDACTED


def _replace_bytes(match: re.Match[bytes]) -> bytes:
    return match["key"] + REDACTED.encode()


def _has_generated_repr(value: object) -> bool:
    """A dataclass instance whose ``repr`` is the one ``@dataclass`` wrote: its
    fields are shown one by one, so secret field names are redacted. A class's
    own ``__repr__`` is honoured (then scrubbed as text)."""
    if isinstance(value, type) or not dataclasses.is_dataclass(value):
        return False
    # The generated __repr__ is wrapped in a recursion guard that lives in
    # dataclasses (3.11) or reprlib (later versions); a class's own does not.
    code = getattr(type(value).__repr__, "__code__", None)
    return code is not None and code.co_filename.endswith(_GENERATED_REPR_FILES)


def _int_repr(value: int) -> str:
    try:
        return repr(value)
    except ValueError:  # more digits than Python converts
        return f"<int of {value.bit_length()} bits>"


def shape_of(value: object) -> str:
    """What ``value`` is and how big, without its content: ``a dict of 3 keys``,
    ``a string of 7340032 characters``, ``12 bytes``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"a number ({type(value).__name__})"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"{len(value)} bytes"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} of {len(value)} keys"
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


@lru_cache(maxsize=32)
def redactor(keys: tuple[str, ...] = DEFAULT_REDACT_KEYS) -> Redactor:
    """The :class:`Redactor` for ``keys``, built once per distinct tuple."""
    return Redactor(keys)


def preview(value: object, limit: int | None = None) -> str:
    """:meth:`Redactor.preview` with the default keys, for code that has no endpoint."""
    return redactor().preview(value, limit)


def preview_broadcast(event: object, topic: object) -> str:
    """``'new_msg' to 'rooms:lobby'`` for error messages, each cut to a short preview."""
    return f"{preview(event)} to {preview(topic)}"


def redactor_for(socket: object) -> Redactor:
    """The redactor of the endpoint serving ``socket`` (the default one without).

    Lenient on purpose: a user's unit test may hand a callback any object as
    its socket, and a log line must not fail for it.
    """
    config = getattr(getattr(socket, "endpoint", None), "config", None)
    found = getattr(config, "redactor", None)
    return found if isinstance(found, Redactor) else redactor()
