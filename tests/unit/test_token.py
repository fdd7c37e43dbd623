"""Token.sign / Token.verify: Phoenix.Token's envelope and rules, JSON bodies.

Expiry is tested by signing in the past (``signed_at``), never by sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import traceback
from typing import Any

import pytest

from channels_actor import (
    ChannelsError,
    ConfigurationError,
    Endpoint,
    Token,
    TokenError,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
)
from channels_actor import token as token_module

SECRET = "k" * 64
SALT = "user socket"
DAY = 86_400


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resign(body: bytes, secret: str = SECRET, salt: str = SALT) -> str:
    """A token for ``body`` made the way Phoenix documents it, with the stdlib only."""
    return _mac("SFMyNTY." + _b64(body), secret, salt)


def _mac(value: str, secret: str = SECRET, salt: str = SALT) -> str:
    key = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt.encode(), 1000, 32)
    return value + "." + _b64(hmac.new(key, value.encode(), hashlib.sha256).digest())


# round trips ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [42, "u-1", {"user_id": 7, "roles": ["admin"]}, [1, 2.5, None, True], None, "ünï ☃"],
)
def test_round_trip(data: Any) -> None:
    token = Token.sign(SECRET, SALT, data)
    assert Token.verify(SECRET, SALT, token) == data


def test_bytes_secret_and_salt_match_their_str_forms() -> None:
    token = Token.sign(SECRET.encode(), SALT.encode(), 1)
    assert Token.verify(SECRET, SALT, token) == 1


def test_envelope_is_phoenixs_with_a_json_body() -> None:
    # An independent HMAC over Phoenix's envelope gives the same token: the
    # key derivation, MAC and encoding are Phoenix's; only the body is JSON.
    signed_at = 1_700_000_000.5
    token = Token.sign(SECRET, SALT, {"id": 1}, max_age=60, signed_at=signed_at)
    prefix, body, _mac = token.split(".")
    assert prefix == "SFMyNTY"
    assert base64.b64decode(prefix + "=") == b"HS256"
    assert json.loads(_unb64(body)) == [{"id": 1}, 1_700_000_000_500, 60]
    assert token == _resign(_unb64(body))


def test_signed_not_encrypted_the_data_is_readable() -> None:
    token = Token.sign(SECRET, SALT, {"email": "a@example.com"})
    assert b"a@example.com" in _unb64(token.split(".")[1])


# expiry ------------------------------------------------------------------------


def test_expired_by_the_max_age_in_the_token() -> None:
    old = time.time() - 120
    token = Token.sign(SECRET, SALT, 1, max_age=60, signed_at=old)
    with pytest.raises(TokenExpired) as raised:
        Token.verify(SECRET, SALT, token)
    assert raised.value.reason == "expired"
    assert isinstance(raised.value, TokenError)
    assert isinstance(raised.value, ChannelsError)


def test_valid_within_the_max_age_in_the_token() -> None:
    token = Token.sign(SECRET, SALT, 1, max_age=600, signed_at=time.time() - 120)
    assert Token.verify(SECRET, SALT, token) == 1


def test_default_max_age_is_one_day() -> None:
    fresh = Token.sign(SECRET, SALT, 1, signed_at=time.time() - DAY + 60)
    stale = Token.sign(SECRET, SALT, 1, signed_at=time.time() - DAY - 60)
    assert Token.verify(SECRET, SALT, fresh) == 1
    with pytest.raises(TokenExpired):
        Token.verify(SECRET, SALT, stale)


def test_verify_max_age_overrides_the_tokens_both_ways() -> None:
    token = Token.sign(SECRET, SALT, 1, max_age=60, signed_at=time.time() - 120)
    assert Token.verify(SECRET, SALT, token, max_age=600) == 1
    fresh = Token.sign(SECRET, SALT, 1, max_age=DAY, signed_at=time.time() - 120)
    with pytest.raises(TokenExpired):
        Token.verify(SECRET, SALT, fresh, max_age=60)


@pytest.mark.parametrize("max_age", [0, -1, 0.0])
def test_max_age_at_or_below_zero_is_always_expired(max_age: float) -> None:
    token = Token.sign(SECRET, SALT, 1)
    with pytest.raises(TokenExpired):
        Token.verify(SECRET, SALT, token, max_age=max_age)
    with pytest.raises(TokenExpired):
        Token.verify(SECRET, SALT, Token.sign(SECRET, SALT, 1, max_age=max_age))


@pytest.mark.parametrize("forever", [None, math.inf])
def test_no_max_age_never_expires(forever: float | None) -> None:
    ancient = time.time() - 10 * 365 * DAY
    token = Token.sign(SECRET, SALT, 1, max_age=forever, signed_at=ancient)
    assert json.loads(_unb64(token.split(".")[1]))[2] is None
    assert Token.verify(SECRET, SALT, token) == 1
    dated = Token.sign(SECRET, SALT, 1, max_age=60, signed_at=ancient)
    assert Token.verify(SECRET, SALT, dated, max_age=forever) == 1


def test_signed_in_the_future_is_invalid() -> None:
    token = Token.sign(SECRET, SALT, 1, signed_at=time.time() + 3600)
    with pytest.raises(TokenInvalid, match="future") as raised:
        Token.verify(SECRET, SALT, token)
    assert not isinstance(raised.value, TokenExpired)


def test_a_little_clock_skew_between_nodes_is_allowed() -> None:
    token = Token.sign(SECRET, SALT, 1, signed_at=time.time() + 5)
    assert Token.verify(SECRET, SALT, token) == 1


# tampering -------------------------------------------------------------------------


def _flip(text: str, index: int) -> str:
    swapped = "A" if text[index] != "A" else "B"
    return text[:index] + swapped + text[index + 1 :]


def test_tampered_body_is_invalid() -> None:
    token = Token.sign(SECRET, SALT, {"user_id": 1})
    prefix, body, mac = token.split(".")
    forged_body = _b64(json.dumps([{"user_id": 2}, int(time.time() * 1000), DAY]).encode())
    for bad in (f"{prefix}.{forged_body}.{mac}", f"{prefix}.{_flip(body, 3)}.{mac}"):
        with pytest.raises(TokenInvalid, match="bad signature") as raised:
            Token.verify(SECRET, SALT, bad)
        assert raised.value.reason == "invalid"


def test_tampered_signature_is_invalid() -> None:
    token = Token.sign(SECRET, SALT, 1)
    prefix, body, mac = token.split(".")
    for bad_mac in (_flip(mac, 0), _flip(mac, len(mac) - 2), mac[:-1], mac + "A"):
        with pytest.raises(TokenInvalid):
            Token.verify(SECRET, SALT, f"{prefix}.{body}.{bad_mac}")


def test_other_salt_or_secret_is_invalid() -> None:
    token = Token.sign(SECRET, SALT, 1)
    with pytest.raises(TokenInvalid):
        Token.verify(SECRET, "password reset", token)
    with pytest.raises(TokenInvalid):
        Token.verify("x" * 64, SALT, token)


def test_expired_tampered_token_is_invalid_not_expired() -> None:
    # the signature is checked first: a forged body cannot even claim to be expired
    token = Token.sign(SECRET, SALT, 1, max_age=1, signed_at=time.time() - 60)
    prefix, body, mac = token.split(".")
    with pytest.raises(TokenInvalid):
        Token.verify(SECRET, SALT, f"{prefix}.{body}.{_flip(mac, 1)}")


# malformed input ---------------------------------------------------------------------


def test_missing_token() -> None:
    with pytest.raises(TokenMissing) as raised:
        Token.verify(SECRET, SALT, None)
    assert raised.value.reason == "missing"
    assert isinstance(raised.value, TokenInvalid)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "SFMyNTY.",
        "SFMyNTY..",
        "SFMyNTY.abc",
        "HS512.abc.def",
        "SFMyNTY.ab$c.def",
        "SFMyNTY.abc.def.ghi",
        " SFMyNTY.abc.def",
        "SFMyNTY.abc.def\n",
    ],
)
def test_malformed_tokens_are_invalid(bad: str) -> None:
    with pytest.raises(TokenInvalid, match="not a token"):
        Token.verify(SECRET, SALT, bad)


@pytest.mark.parametrize("bad", [42, b"SFMyNTY.abc.def", ["SFMyNTY.abc.def"], {"t": 1}])
def test_non_string_tokens_are_invalid(bad: Any) -> None:
    with pytest.raises(TokenInvalid, match="is a str"):
        Token.verify(SECRET, SALT, bad)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\x83h\x03a\x01",  # an Erlang term, as a Phoenix token holds
        b'{"data": 1}',
        b"[1, 2]",
        b'[1, "now", 60]',
        b'[1, 1700000000000, "forever"]',
        b"[1, true, 60]",
    ],
)
def test_a_genuine_signature_over_a_foreign_body_is_invalid(body: bytes) -> None:
    with pytest.raises(TokenInvalid, match="body is not"):
        Token.verify(SECRET, SALT, _resign(body))


def test_a_genuine_signature_over_a_body_that_is_not_base64_is_invalid() -> None:
    with pytest.raises(TokenInvalid, match="body is not"):
        Token.verify(SECRET, SALT, _mac("SFMyNTY.A"))  # 1 char: no base64 length


def test_errors_show_a_short_preview_never_the_token_or_secret() -> None:
    token = Token.sign(SECRET, SALT, {"user_id": "someone"})
    prefix, body, mac = token.split(".")
    cases = [
        (f"{prefix}.{body}.{_flip(mac, 0)}", SECRET),
        (token, "another secret that is long enough"),
        (token + "$", SECRET),
        (_resign(b"\x83h\x03a\x01"), SECRET),
        (Token.sign(SECRET, SALT, 1, signed_at=time.time() + 3600), SECRET),
        (Token.sign(SECRET, SALT, 1, max_age=1, signed_at=1.0), SECRET),
    ]
    for bad, secret in cases:
        with pytest.raises(TokenError) as raised:
            Token.verify(secret, SALT, bad)
        text = "".join(traceback.format_exception(raised.value))
        assert SECRET not in text
        assert secret not in text
        assert bad.split(".")[2] not in text  # no signature
        assert len(str(raised.value)) < 200, text


def test_bad_arguments_to_sign() -> None:
    with pytest.raises(TypeError, match="JSON"):
        Token.sign(SECRET, SALT, object())
    with pytest.raises(ValueError, match="empty"):
        Token.sign("", SALT, 1)
    with pytest.raises(TypeError, match="secret_key_base"):
        Token.sign(None, SALT, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="salt"):
        Token.sign(SECRET, 5, 1)  # type: ignore[arg-type]
    for bad_age in ("60", True, math.nan, -math.inf):
        with pytest.raises(TypeError, match="max_age"):
            Token.sign(SECRET, SALT, 1, max_age=bad_age)  # type: ignore[arg-type]


# key derivation ------------------------------------------------------------------------


def test_derived_keys_are_cached_per_secret_and_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, secret: bytes, salt: bytes, iterations: int, length: int) -> bytes:
        calls.append((secret, salt))
        assert (name, iterations, length) == ("sha256", 1000, 32)
        return real(name, secret, salt, iterations, length)

    token_module._signer.cache_clear()
    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    try:
        for _ in range(5):
            Token.verify(SECRET, SALT, Token.sign(SECRET, SALT, 1))
        Token.sign(SECRET, "other salt", 1)
        Token.sign("s" * 64, SALT, 1)
    finally:
        token_module._signer.cache_clear()
    assert calls == [
        (SECRET.encode(), SALT.encode()),
        (SECRET.encode(), b"other salt"),
        (b"s" * 64, SALT.encode()),
    ]


# the endpoint ---------------------------------------------------------------------------


def test_endpoint_signs_and_verifies_with_its_secret() -> None:
    endpoint = Endpoint(secret_key_base=SECRET)
    token = endpoint.sign_token(SALT, 99, max_age=60)
    assert endpoint.verify_token(SALT, token) == 99
    assert Token.verify(SECRET, SALT, token) == 99
    old = endpoint.sign_token(SALT, 99, signed_at=time.time() - 120, max_age=60)
    with pytest.raises(TokenExpired):
        endpoint.verify_token(SALT, old)
    assert endpoint.verify_token(SALT, old, max_age=None) == 99
    with pytest.raises(TokenInvalid):
        Endpoint(secret_key_base="y" * 64).verify_token(SALT, token)


def test_endpoint_without_a_secret_says_how_to_set_one() -> None:
    endpoint = Endpoint()
    with pytest.raises(ConfigurationError, match=r"secret_key_base=") as raised:
        endpoint.sign_token(SALT, 1)
    assert "sign_token" in str(raised.value)
    with pytest.raises(ConfigurationError, match=r"verify_token\(\) needs"):
        endpoint.verify_token(SALT, "SFMyNTY.abc.def")
