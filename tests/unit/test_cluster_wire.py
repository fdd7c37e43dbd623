"""The record format between nodes (channels_actor.pubsub.wire), without Redis."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels_actor.pubsub import wire

names = st.text(max_size=40)


@given(
    route=st.sampled_from([wire.ALL_BUT_ORIGIN, wire.ONLY_TARGET]),
    origin=names,
    target=names,
    topic=names,
    event=names,
    payload=st.binary(max_size=2000),
    binary=st.booleans(),
    compress_over=st.one_of(st.none(), st.integers(0, 3000)),
)
def test_every_record_reads_back_as_written(
    route: int,
    origin: str,
    target: str,
    topic: str,
    event: str,
    payload: bytes,
    binary: bool,
    compress_over: int | None,
) -> None:
    data = wire.encode(
        route, origin, target, topic=topic, event=event, payload=payload, binary=binary,
        compress_over=compress_over,
    )
    assert wire.route_of(data) == (route, origin, target)
    assert wire.decode(data) == wire.Record(route, origin, target, topic, event, payload, binary)


def test_a_long_payload_is_compressed_only_past_the_threshold() -> None:
    payload = b'{"body":"' + b"a" * 5000 + b'"}'
    plain = wire.encode(wire.ALL_BUT_ORIGIN, "n", "", topic="t", event="e", payload=payload,
                        binary=False, compress_over=len(payload))
    squeezed = wire.encode(wire.ALL_BUT_ORIGIN, "n", "", topic="t", event="e", payload=payload,
                           binary=False, compress_over=len(payload) - 1)
    assert len(plain) > len(payload) > 10 * len(squeezed)
    assert wire.decode(squeezed).payload == wire.decode(plain).payload == payload


def test_a_payload_that_does_not_shrink_crosses_as_it_is() -> None:
    payload = bytes(range(256))  # zlib makes this longer
    data = wire.encode(wire.ALL_BUT_ORIGIN, "n", "", topic="t", event="e", payload=payload,
                       binary=True, compress_over=0)
    assert data.endswith(payload)


def test_control_records_say_what_they_are_and_for_whom() -> None:
    hello = wire.decode(wire.encode_control("node-1", wire.HELLO))
    bye = wire.decode(wire.encode_control("node-1", wire.BYE))
    assert (hello.route, hello.origin, hello.event, hello.control) == (
        wire.ALL_BUT_ORIGIN, "node-1", "hello", True,
    )
    assert (bye.route, bye.event, bye.control) == (wire.ALL_BUT_ORIGIN, "bye", True)


def test_a_wake_record_is_addressed_to_its_origin() -> None:
    record = wire.decode(wire.encode_control("node-1", wire.WAKE))
    assert (record.route, record.origin, record.target, record.control) == (
        wire.ONLY_TARGET, "node-1", "node-1", True,
    )


def _record(payload: bytes = b"{}", **options: object) -> bytes:
    return wire.encode(wire.ALL_BUT_ORIGIN, "origin", "", topic="room:1", event="e",
                       payload=payload, binary=False, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "cut short"),
        (b"\x01\x00", "cut short"),
        (_record()[:12], "cut short"),
        (b"\x02" + _record()[1:], "version 2; this node reads version 1"),
        (b"\x01\x07" + _record()[2:], "unknown route 7"),
        (b"\x01\x00\x00\x00\x02\xff\xfe" + _record()[11:], "not UTF-8"),
        (b"PUBLISH from another program", "version 80"),
    ],
)
def test_a_record_in_another_format_is_refused_with_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(wire.WireError, match=problem):
        wire.decode(data)


def test_a_compressed_payload_never_inflates_past_the_limit() -> None:
    bomb = _record(b"0" * 10_000_000, compress_over=0)
    assert len(bomb) < 50_000
    with pytest.raises(wire.WireError, match="inflates past the limit of 1000000 bytes"):
        wire.decode(bomb, max_payload=1_000_000)
    assert len(wire.decode(bomb, max_payload=10_000_000).payload) == 10_000_000


def test_a_plain_payload_over_the_limit_is_refused() -> None:
    with pytest.raises(wire.WireError, match="payload of 2000 bytes is over the limit of 1999"):
        wire.decode(_record(b"x" * 2000), max_payload=1999)


def test_damaged_compressed_data_is_refused() -> None:
    data = _record(b"y" * 5000, compress_over=0)
    with pytest.raises(wire.WireError, match="not valid zlib data|cut short"):
        wire.decode(data[:-5] + b"\x00\x00\x00\x00\x00")
    with pytest.raises(wire.WireError, match="cut short"):
        wire.decode(data[: len(data) - len(zlib.compress(b"y" * 5000, 1)) // 2])
