"""The HTTP head parser against malformed heads: a RequestHead or BadRequest, nothing else.

``parse_head`` gets arbitrary bytes ending in a blank line, heads built from
parts that may each be wrong, and byte mutations of a valid WebSocket upgrade.
Whatever it accepts must be what a strict HTTP/1.1 parser accepts: a token
method, an ``HTTP/1.x`` version, token header names, and no CR, LF or NUL in the
target or a value (a bare LF inside a line is how request smuggling starts).
A valid head round-trips its method, target, version and headers.
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from channels_actor.transports.http import BadRequest, RequestHead, parse_head
from tests.fuzz import FED, count, fuzz_settings, make_rng, mutate

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN = ("\r", "\n", "\0")

UPGRADE = (
    b"GET /socket/websocket?vsn=2.0.0&token=abc HTTP/1.1\r\n"
    b"Host: 127.0.0.1:4000\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Origin: http://127.0.0.1:4000\r\n"
    b"\r\n"
)


def parse_or_bad(head: bytes) -> RequestHead | None:
    """``parse_head``'s answer; any exception but BadRequest fails the test."""
    try:
        parsed = parse_head(head)
    except BadRequest as exc:
        assert 400 <= exc.status < 600
        assert isinstance(exc.reason, str)
        return None
    assert isinstance(parsed, RequestHead)
    return parsed


def assert_strict(parsed: RequestHead) -> None:
    """What an accepted head must be, whatever bytes it came from."""
    assert _TOKEN.fullmatch(parsed.method.encode("ascii")), parsed.method
    assert re.fullmatch(r"HTTP/1\.[0-9]", parsed.version), parsed.version
    assert parsed.target
    assert " " not in parsed.target
    assert not any(c in parsed.target for c in _FORBIDDEN), parsed.target
    for name, value in parsed.headers:
        assert _TOKEN.fullmatch(name.encode("ascii")), name
        assert name == name.lower()
        assert not any(c in value for c in _FORBIDDEN), value
        assert value == value.strip(" \t")


def feed(target: str, head: bytes) -> RequestHead | None:
    FED[target] += 1
    parsed = parse_or_bad(head)
    if parsed is not None:
        assert_strict(parsed)
    return parsed


@fuzz_settings(1000)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_ending_in_a_blank_line(data: bytes) -> None:
    feed("parse_head arbitrary", data + b"\r\n\r\n")


_token = st.text(_TCHARS, min_size=1, max_size=12)
_junk_bytes = st.binary(max_size=12)
# Field values as a client sends them: visible text and inner spaces (no CR, LF, NUL).
_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=20
).map(lambda v: v.strip(" \t"))
_target = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)


@st.composite
def head_parts(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    """A request line and headers whose parts are each valid or junk."""
    method = draw(_token.map(str.encode) | _junk_bytes)
    target = draw(_target.map(str.encode) | _junk_bytes)
    version = draw(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])
        | _junk_bytes
        | _junk_bytes.map(lambda b: b"HTTP/1." + b)
    )
    headers = draw(
        st.lists(
            st.tuples(
                _token.map(str.encode) | _junk_bytes,
                _value.map(lambda v: v.encode("latin-1")) | _junk_bytes,
            ),
            max_size=6,
        )
    )
    return method, target, version, headers


def build(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    space: bytes = b" ",
) -> bytes:
    lines = [method + b" " + target + b" " + version]
    lines += [name + b":" + space + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _valid(
    method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]]
) -> bool:
    def clean(raw: bytes) -> bool:
        return not any(c in raw for c in b"\r\n\0")

    return (
        bool(_TOKEN.fullmatch(method))
        and bool(target) and b" " not in target and clean(target)
        and bool(re.fullmatch(rb"HTTP/1\.[0-9]", version))
        and all(_TOKEN.fullmatch(name) and clean(value) and value == value.strip(b" \t")
                for name, value in headers)
    )  # fmt: skip


@fuzz_settings(500)
@given(parts=head_parts(), space=st.sampled_from([b"", b" ", b"\t ", b"  "]))
def test_heads_built_from_right_and_wrong_parts(
    parts: tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]], space: bytes
) -> None:
    method, target, version, headers = parts
    parsed = feed("parse_head structured", build(method, target, version, headers, space))
    if _valid(method, target, version, headers):
        assert parsed == RequestHead(
            method.decode(),
            target.decode("latin-1"),
            version.decode(),
            [(name.decode().lower(), value.decode("latin-1")) for name, value in headers],
        )


def test_mutated_upgrade_requests() -> None:
    rng = make_rng("http")
    accepted = 0
    for _ in range(count(8_000, weight=0.3)):
        mutant = mutate(UPGRADE, rng, [UPGRADE])
        # The reader hands over everything up to the first blank line.
        end = mutant.find(b"\r\n\r\n")
        head = mutant[: end + 4] if end >= 0 else mutant + b"\r\n\r\n"
        accepted += feed("parse_head mutated upgrade", head) is not None
    assert accepted  # some mutants are still valid heads, so both paths ran


def test_the_upgrade_request_parses() -> None:
    parsed = parse_head(UPGRADE)
    assert parsed.method == "GET"
    assert parsed.target == "/socket/websocket?vsn=2.0.0&token=abc"
    assert ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==") in parsed.headers
