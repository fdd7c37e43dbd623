"""Phoenix.Token for Python: signed, timestamped values such as a user id.

A page the user already logged into signs the user's id; the browser hands the
token to phoenix.js (``params: {token}`` or ``authToken``), and the socket's
``connect`` verifies it, so the WebSocket needs no cookie.

The envelope is Phoenix's: ``"SFMyNTY." + b64url(body) + "." + b64url(mac)``,
with the key derived from ``secret_key_base`` and the salt by PBKDF2-HMAC-SHA256
(1000 iterations, 32 bytes) and the MAC an HMAC-SHA256 over everything before
the last dot. The body is JSON ``[data, signed_at_ms, max_age_s]`` where
Phoenix writes an Erlang term, so tokens are not byte-compatible with Elixir's:
a token from one side fails to verify on the other.

Tokens are signed, not encrypted: anyone holding one can read its data (it is
base64 JSON). Put in it only what the holder may see, such as an id.

The HMAC, its base64 and the constant-time comparison are itsdangerous'
:class:`~itsdangerous.Signer` (with our derived key, so no derivation of its
own); PBKDF2 is the standard library's. This module does no I/O.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import re
import time
from typing import Any, Final

import orjson
from itsdangerous import BadData, BadSignature, Signer
from itsdangerous.encoding import base64_decode, base64_encode

from .errors import TokenExpired, TokenInvalid, TokenMissing

__all__ = ["DEFAULT_MAX_AGE", "Token"]

#: Seconds a token lives unless ``sign`` or ``verify`` says otherwise (one day, as Phoenix).
DEFAULT_MAX_AGE: Final = 86_400

KEY_ITERATIONS: Final = 1000
KEY_LENGTH: Final = 32
#: A token signed up to this far ahead of our clock is still valid: the clocks
#: of the node that signed it and of the one verifying it may differ a little.
FUTURE_LEEWAY_MS: Final = 60_000

_PREFIX: Final = "SFMyNTY."  # base64 of "HS256", as Phoenix
_SHAPE: Final = re.compile(r"SFMyNTY\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_PREVIEW: Final = 12  # characters of a bad token shown in an error


class _Default(enum.Enum):
    """``verify``'s default max_age: the one kept in the token."""

    FROM_TOKEN = "from the token"

    def __repr__(self) -> str:
        return "<max_age from the token>"


_FROM_TOKEN: Final = _Default.FROM_TOKEN


def _preview(token: str) -> str:
    """Enough of a token to tell which one it was, never enough to reuse it."""
    shown = token[:_PREVIEW] + ("..." if len(token) > _PREVIEW else "")
    return f"{shown!r} ({len(token)} chars)"


def _bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    msg = f"{what} must be str or bytes, got {type(value).__name__}"
    raise TypeError(msg)


@functools.lru_cache(maxsize=64)
def _signer(secret_key_base: bytes, salt: bytes) -> Signer:
    """The signer for one (secret, salt): PBKDF2 runs once per pair, not per token.

    Applications use a handful of salts, so a small cache holds them all; the
    secret is in memory already, as the endpoint's config.
    """
    key = hashlib.pbkdf2_hmac("sha256", secret_key_base, salt, KEY_ITERATIONS, KEY_LENGTH)
    return Signer(key, sep=".", key_derivation="none", digest_method=hashlib.sha256)


def _check_max_age(max_age: float | None) -> float | None:
    if max_age is None or (isinstance(max_age, float) and math.isinf(max_age) and max_age > 0):
        return None
    number = isinstance(max_age, (int, float)) and not isinstance(max_age, bool)
    if not number or not math.isfinite(max_age):  # NaN compares false; -inf is no lifetime
        msg = f"max_age must be seconds (a finite number), None or math.inf; got {max_age!r}"
        raise TypeError(msg)
    return max_age


def _now_ms() -> int:
    # wall clock, not monotonic: the token is checked by another process, later
    return time.time_ns() // 1_000_000


class Token:
    """Sign and verify tokens, as ``Phoenix.Token`` (see the module docstring).

    Both take the secret and a salt; use one salt per purpose (``"user socket"``)
    so a token made for one cannot be replayed as another. An endpoint with a
    ``secret_key_base`` has :meth:`Endpoint.sign_token` / ``verify_token``.
    """

    @staticmethod
    def sign(
        secret_key_base: str | bytes,
        salt: str | bytes,
        data: Any,
        max_age: float | None = DEFAULT_MAX_AGE,
        signed_at: float | None = None,
    ) -> str:
        """Return a token holding ``data`` (anything JSON can carry).

        Args:
            secret_key_base: the application's secret (long and random).
            salt: names what the token is for; ``verify`` needs the same one.
            data: the value ``verify`` returns; readable by whoever holds the token.
            max_age: seconds the token is valid for, kept in the token; ``None``
                or ``math.inf``: forever. ``verify`` may override it.
            signed_at: when it was signed, Unix seconds as ``time.time()``
                (default now); stored in milliseconds.

        Raises:
            TypeError: ``data`` cannot be JSON, or an argument has the wrong type.
            ValueError: ``secret_key_base`` is empty.
        """
        secret = _bytes(secret_key_base, "secret_key_base")
        if not secret:
            msg = "secret_key_base is empty: use a long random one, e.g. secrets.token_urlsafe(48)"
            raise ValueError(msg)
        lifetime = _check_max_age(max_age)
        signed_ms = _now_ms() if signed_at is None else int(signed_at * 1000)
        try:
            body = orjson.dumps([data, signed_ms, lifetime])
        except TypeError as exc:  # orjson.JSONEncodeError
            msg = f"Token data must be JSON-serializable: {exc}"
            raise TypeError(msg) from None
        value = _PREFIX + base64_encode(body).decode()
        return _signer(secret, _bytes(salt, "salt")).sign(value).decode()

    @staticmethod
    def verify(
        secret_key_base: str | bytes,
        salt: str | bytes,
        token: str | None,
        max_age: float | _Default | None = _FROM_TOKEN,
    ) -> Any:
        """Return the data of a token made by :meth:`sign` with the same secret and salt.

        Args:
            token: what the client sent; ``None`` (nothing sent) raises TokenMissing.
            max_age: seconds since signing past which it is expired; by default
                the one in the token, ``None`` or ``math.inf`` for no limit,
                ``<= 0`` always expired.

        Raises:
            TokenExpired: signed longer ago than ``max_age``.
            TokenMissing: ``token`` is None (a TokenInvalid with reason "missing").
            TokenInvalid: not a token, tampered with, signed with another secret
                or salt, or signed in the future. Messages show at most a short
                preview of the token and never the secret.
        """
        if token is None:
            raise TokenMissing("no token was given")
        if not isinstance(token, str):
            msg = f"a token is a str, got {type(token).__name__}"
            raise TokenInvalid(msg)
        if not _SHAPE.fullmatch(token):
            msg = f"not a token: expected {_PREFIX}<body>.<signature>, got {_preview(token)}"
            raise TokenInvalid(msg)
        secret = _bytes(secret_key_base, "secret_key_base")
        try:
            value = _signer(secret, _bytes(salt, "salt")).unsign(token)
        except BadSignature:  # its message quotes the signature: not ours to show
            msg = f"bad signature (tampered, or another secret or salt): {_preview(token)}"
            raise TokenInvalid(msg) from None
        data, signed_ms, lifetime = _body(value[len(_PREFIX) :], token)
        if not isinstance(max_age, _Default):
            lifetime = _check_max_age(max_age)
        now = _now_ms()
        if signed_ms > now + FUTURE_LEEWAY_MS:
            ahead = signed_ms - now
            msg = f"signed in the future ({ahead} ms ahead of this clock): {_preview(token)}"
            raise TokenInvalid(msg)
        if lifetime is not None and (lifetime <= 0 or signed_ms + int(lifetime * 1000) < now):
            msg = f"expired: signed {(now - signed_ms) / 1000:.0f} s ago, max_age {lifetime} s"
            raise TokenExpired(msg)
        return data


def _body(encoded: bytes, token: str) -> tuple[Any, int, float | None]:
    """Decode a signed body; it is ours once signed, so a bad one is a bug or a foreign token."""
    try:
        decoded = orjson.loads(base64_decode(encoded))
    except (BadData, orjson.JSONDecodeError):  # not base64 / not JSON
        decoded = None
    match decoded:
        case [data, int() as signed_ms, None | int() | float() as lifetime] if not isinstance(
            signed_ms, bool
        ) and not isinstance(lifetime, bool):
            return data, signed_ms, lifetime
    msg = (
        "signed with this secret and salt but its body is not [data, signed_at_ms, max_age] "
        f"JSON (a Phoenix/Elixir token? theirs hold Erlang terms): {_preview(token)}"
    )
    raise TokenInvalid(msg)
