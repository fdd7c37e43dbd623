"""Previews for log lines: bounded, with the values of secret keys redacted."""

from __future__ import annotations

import json
import time
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest

from channels_actor import Endpoint, Socket
from channels_actor._redact import (
    PREVIEW_LIMIT,
    REDACTED,
    Redactor,
    preview,
    redactor,
    redactor_for,
)
from channels_actor.errors import ConfigurationError

SECRET = "SECRET_VALUE_42"


def test_secret_keys_in_nested_dicts_and_lists() -> None:
    value = {
        "user": "ann",
        "password": SECRET,
        "items": [{"auth_token": SECRET}, ("x", {"Authorization": SECRET})],
        "deep": {"a": {"b": [{"client_secret": {"nested": SECRET}}]}},
    }
    text = Redactor(limit=1000).preview(value)
    assert SECRET not in text
    assert text.count(repr(REDACTED)) == 4
    assert "'user': 'ann'" in text  # the rest is shown as repr would


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "auth_token",
        "X-Auth-Token",
        "api-key",
        "ApiKey",
        "set_cookie",
        "sessionId",
        "private key",
        "db_passwd",
    ],
)
def test_key_names_match_case_and_separator_insensitively(key: str) -> None:
    assert SECRET not in preview({key: SECRET})
    assert Redactor().is_secret(key)


def test_other_keys_and_non_string_keys_are_shown() -> None:
    assert preview({"author": "bob", 1: "one", None: 2}) == "{'author': 'bob', 1: 'one', None: 2}"


def test_bytes_are_scrubbed_and_shown_as_bytes() -> None:
    data = b'{"password":"' + SECRET.encode() + b'","x":1}\x00\xff'
    text = preview(data)
    assert SECRET not in text
    assert text.startswith('b\'{"password":[REDACTED],')
    assert preview(bytearray(b"token=" + SECRET.encode())) == "b'token=[REDACTED]'"


@pytest.mark.parametrize(
    "frame",
    [
        '["1","1","room:1","phx_join",{"password":"' + SECRET + '"}',  # missing a bracket
        '["1","1","room:1","phx_join",{"password": "' + SECRET + "A" * 10_000,  # cut inside
        '["1","1","room:1","phx_join",{"password":12345' + SECRET + "}",  # not a string
        "{'password': '" + SECRET + "'}",  # a Python repr
        '{\\"password\\":\\"' + SECRET + '\\"}',  # JSON inside a JSON string
        "password => '" + SECRET + "'",
    ],
)
def test_malformed_json_text_is_scrubbed_before_it_is_cut(frame: str) -> None:
    text = preview(frame)
    assert SECRET not in text
    assert SECRET[:4] not in text
    assert "password" in text  # the key stays: it says what was hidden
    assert len(text) < PREVIEW_LIMIT + 40


def test_a_secret_straddling_the_cut_is_redacted() -> None:
    for pad in range(PREVIEW_LIMIT - 20, PREVIEW_LIMIT + 20):
        text = preview("x" * pad + '"token":"' + SECRET + '"' + "y" * 500)
        assert SECRET[:3] not in text, pad


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "/socket/websocket?vsn=2.0.0&token=" + SECRET + "&x=1",
            "'/socket/websocket?vsn=2.0.0&token=[REDACTED]&x=1'",
        ),
        (
            "GET /socket/websocket?auth_token=" + SECRET + " HTTP/1.1",
            "'GET /socket/websocket?auth_token=[REDACTED] HTTP/1.1'",
        ),
        ("Authorization: Bearer " + SECRET, "'Authorization: [REDACTED]'"),
        ("X-Api-Key: " + SECRET + "\r\nHost: a", "'X-Api-Key: [REDACTED]\\r\\nHost: a'"),
        ("?Access-Token=" + SECRET, "'?Access-Token=[REDACTED]'"),
        ("session_id=" + SECRET + "; theme=dark", "'session_id=[REDACTED]; theme=dark'"),
    ],
)
def test_query_strings_and_headers(text: str, expected: str) -> None:
    assert preview(text) == expected


def test_a_colon_without_a_space_or_quote_is_not_a_pair() -> None:
    # Phoenix topics use colons: "session:lobby" is a name, not a secret.
    assert preview("session:lobby") == "'session:lobby'"
    assert preview("token:" + SECRET) == f"'token:{SECRET}'"
    for text in ["token: " + SECRET, 'token:"' + SECRET + '"', "'token':" + SECRET]:
        assert SECRET not in preview(text), text


def test_huge_values_are_cut_and_their_size_reported() -> None:
    assert (
        preview("a" * 7 * 1024 * 1024)
        == "'" + "a" * (PREVIEW_LIMIT - 1) + "... (a string of 7340032 characters)"
    )
    assert preview(b"\x00" * 100).endswith("... (100 bytes)")
    assert preview(list(range(10**6))).endswith("... (a list of 1000000 items)")
    frame = json.dumps({"a": "b" * 7_000_000})
    text = preview(frame)
    assert text.startswith("""'{"a": "bbb""") and text.endswith(
        f"... (a string of {len(frame)} characters)"
    )
    assert len(text) < PREVIEW_LIMIT + 50


def test_short_values_are_shown_whole_as_repr() -> None:
    for value in [
        "hi",
        b"hi",
        3,
        2.5,
        None,
        True,
        [1, "a"],
        (1,),
        (),
        {"a": [1, 2]},
        {1, 2},
        frozenset(),
        "it's",
    ]:
        assert preview(value) == repr(value)


def test_previewing_a_huge_value_costs_little() -> None:
    big = {"k": ["x" * 1000] * 100_000, "password": SECRET}
    start = time.perf_counter()
    for _ in range(100):
        preview(big)
    assert time.perf_counter() - start < 0.5  # it walks only what it shows
    assert preview(10**5000) == "<int of 16610 bits>"


def test_deep_nesting_and_broken_reprs_do_not_break_a_log_line() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    assert preview(deep).startswith("[[[[[[...]]]]]]") or "..." in preview(deep)

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert preview(Broken()) == "<Broken (cannot be shown)>"


def test_dataclasses_and_named_tuples_redact_their_fields() -> None:
    @dataclass
    class Login:
        user: str
        password: str

    Creds = namedtuple("Creds", "user token")
    assert preview(Login("ann", SECRET)) == "Login(user='ann', password='[REDACTED]')"
    assert preview(Creds("ann", SECRET)) == "Creds(user='ann', token='[REDACTED]')"

    class Custom:
        def __repr__(self) -> str:
            return f"<Custom password={SECRET}>"

    assert preview(Custom()) == "<Custom password=[REDACTED]>"  # its own repr, scrubbed


def test_keys_are_configurable() -> None:
    mine = Redactor(["ssn"])
    text = mine.preview({"ssn": SECRET, "password": "shown", "note": "ssn=" + SECRET})
    assert SECRET not in text and "'password': 'shown'" in text
    assert Redactor([]).preview({"password": "shown"}) == "{'password': 'shown'}"
    assert redactor(("ssn",)) is redactor(("ssn",))  # built once per key list


def test_endpoint_redact_keys_option() -> None:
    endpoint = Endpoint(redact_keys=["ssn"])
    assert endpoint.config.redactor.keys == ("ssn",)
    assert SECRET not in endpoint.config.redactor.preview({"SSN": SECRET})
    assert "token" in Endpoint().config.redactor.keys
    with pytest.raises(ConfigurationError, match="redact_keys must be a list of key names"):
        Endpoint(redact_keys="password")
    with pytest.raises(ConfigurationError, match="max_topic_size must be a positive int"):
        Endpoint(max_topic_size=0)


def test_redactor_for_a_socket_uses_its_endpoint_and_never_fails() -> None:
    endpoint = Endpoint(redact_keys=["ssn"])
    assert redactor_for(Socket(endpoint=endpoint)).keys == ("ssn",)
    assert redactor_for(Socket()) is redactor()
    assert redactor_for(None) is redactor()
    assert redactor_for(object()) is redactor()  # type: ignore[arg-type]


def test_clip_keeps_text_readable() -> None:
    r = Redactor()
    assert r.clip("boom: token=" + SECRET) == "boom: token=[REDACTED]"
    assert r.clip("x" * 1000, 10) == "xxxxxxxxxx... (a string of 1000 characters)"
