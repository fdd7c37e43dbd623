"""The frame decoders against malformed frames: a Message or InvalidMessageError, nothing else.

Each decoder is checked against a model written from the wire format (what a
frame must look like to be a client message), not just for "does not crash":
where the model says a frame is valid, the decoder must return exactly the
message the model reads; where it says invalid, ``InvalidMessageError``.
Inputs are arbitrary text and bytes, JSON of the wrong shapes and types, binary
pushes with lying size bytes, and byte-level mutations of valid frames.
"""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels_actor import Message, Reply
from channels_actor.errors import InvalidMessageError
from channels_actor.message import Broadcast
from channels_actor.serializers.v1_json import V1JSONSerializer
from channels_actor.serializers.v2_json import V2JSONSerializer
from tests.fuzz import FED, count, fuzz_settings, make_rng, mutate

V1 = V1JSONSerializer()
V2 = V2JSONSerializer()
_INVALID = "invalid"
# Byte-level mutants checked per drawn structured example.
MUTANTS = 12

# ------------------------------------------------------------------ models of the wire format


def _text_or_null(value: object) -> bool:
    return value is None or isinstance(value, str)


def model_v2_text(data: str) -> Message | str:
    """What a V2 text frame means: ``[join_ref, ref, topic, event, payload, ...]``."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _INVALID
    if not isinstance(frame, list) or len(frame) < 5:
        return _INVALID
    join_ref, ref, topic, event, payload = frame[:5]
    if not (isinstance(topic, str) and isinstance(event, str)):
        return _INVALID
    if not (_text_or_null(ref) and _text_or_null(join_ref)):
        return _INVALID
    return Message(topic, event, payload, ref, join_ref)


def model_v1_text(data: str) -> Message | str:
    """What a V1 text frame means: an object with topic, event, payload, ref (join_ref optional)."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _INVALID
    if not isinstance(frame, dict) or not {"topic", "event", "payload", "ref"} <= frame.keys():
        return _INVALID
    topic, event, ref = frame["topic"], frame["event"], frame["ref"]
    join_ref = frame.get("join_ref")
    if not (isinstance(topic, str) and isinstance(event, str)):
        return _INVALID
    if not (_text_or_null(ref) and _text_or_null(join_ref)):
        return _INVALID
    return Message(topic, event, frame["payload"], ref, join_ref)


def model_v2_binary(data: bytes) -> Message | str:
    """A client push: kind 0, four size bytes, join_ref, ref, topic, event (UTF-8), then data."""
    if len(data) < 5 or data[0] != 0:
        return _INVALID
    offset, fields = 5, []
    for size in data[1:5]:
        raw = data[offset : offset + size]
        if len(raw) < size:
            return _INVALID
        try:
            fields.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _INVALID
        offset += size
    join_ref, ref, topic, event = fields
    return Message(topic, event, data[offset:], ref or None, join_ref or None)


def decode_or_invalid(serializer: Any, data: str | bytes) -> Message | str:
    """The decoder's answer in the model's terms; any other exception fails the test."""
    try:
        message = serializer.decode(data)
    except InvalidMessageError as exc:
        assert str(exc), "an InvalidMessageError must say what was wrong"
        return _INVALID
    assert isinstance(message, Message)
    assert isinstance(message.topic, str)
    assert isinstance(message.event, str)
    assert _text_or_null(message.ref)
    assert _text_or_null(message.join_ref)
    return message


def check(target: str, serializer: Any, model: Any, data: str | bytes) -> None:
    FED[target] += 1
    assert decode_or_invalid(serializer, data) == model(data), f"on {data!r:.300}"


def check_mutants(target: str, serializer: Any, model: Any, data: str | bytes) -> None:
    """Check ``data`` and a few byte-level mutants of it (cheap next to drawing an example)."""
    check(target, serializer, model, data)
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    rng = random.Random(zlib.crc32(raw))
    for _ in range(MUTANTS):
        mutant = mutate(raw, rng, [raw])
        if isinstance(data, str):
            text = mutant.decode("utf-8", "surrogateescape")
            check(target + " +mutants", serializer, model, text)
        else:
            check(target + " +mutants", serializer, model, mutant)


# ------------------------------------------------------------------ strategies

_any_text = st.text(st.characters(), max_size=60)  # lone surrogates included
_utf8_text = st.text(st.characters(codec="utf-8"), max_size=30)
_junk_scalar = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond 64 bits as well: JSON allows them, orjson reads them as floats
    | st.floats()  # NaN and infinities: not JSON, json.dumps writes them anyway
    | _any_text
)
_junk = st.recursive(
    _junk_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=10,
)
_ref_value = st.none() | _utf8_text
# Every field is either what it should be or junk of any JSON type.
_topic_or_junk = st.one_of(_utf8_text, _junk)
_ref_or_junk = st.one_of(_ref_value, _junk)
_deep = st.integers(1, 1500).map(lambda depth: "[" * depth + "]" * depth)


@st.composite
def json_text(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> str:
    """``value`` as JSON text, in any of the spellings a client could send."""
    ascii_only = draw(st.booleans())
    indent = draw(st.none() | st.integers(0, 2))
    return json.dumps(draw(value), ensure_ascii=ascii_only, indent=indent)


_v2_array = st.tuples(_ref_or_junk, _ref_or_junk, _topic_or_junk, _topic_or_junk, _junk).map(list)
_v2_frames = (
    _v2_array
    | st.lists(_junk, max_size=4)  # too short
    | st.tuples(_v2_array, st.lists(_junk, max_size=3)).map(lambda t: t[0] + t[1])  # extra
    | _junk
)


@st.composite
def v1_object(draw: st.DrawFn) -> Any:
    fields = {
        "topic": _topic_or_junk,
        "event": _topic_or_junk,
        "payload": _junk,
        "ref": _ref_or_junk,
        "join_ref": _ref_or_junk,
    }
    present = draw(st.sets(st.sampled_from(sorted(fields))))
    frame = {key: draw(fields[key]) for key in sorted(present)}
    frame.update(draw(st.dictionaries(_any_text, _junk, max_size=2)))
    return frame


@st.composite
def binary_push(draw: st.DrawFn) -> bytes:
    """A binary frame built like a client push whose parts may each be wrong."""
    kind = draw(st.sampled_from([0, 0, 0, 1, 2, 255]))
    fields = [draw(st.one_of(_utf8_text.map(str.encode), st.binary(max_size=12))) for _ in range(4)]
    sizes = [len(field) for field in fields]
    if draw(st.booleans()):  # size bytes that lie, pointing short of or past the end
        index = draw(st.integers(0, 3))
        sizes[index] = draw(st.integers(0, 255))
    if any(size > 255 for size in sizes):
        sizes = [size % 256 for size in sizes]
    data = bytes([kind, *sizes]) + b"".join(fields) + draw(st.binary(max_size=16))
    cut = draw(st.none() | st.integers(0, len(data)))
    return data if cut is None else data[:cut]


# ------------------------------------------------------------------ arbitrary input


@fuzz_settings(600)
@given(data=_any_text)
def test_any_text_frame(data: str) -> None:
    check("v2.decode(str) arbitrary", V2, model_v2_text, data)
    check("v1.decode(str) arbitrary", V1, model_v1_text, data)


@fuzz_settings(600)
@given(data=st.binary(max_size=300))
def test_any_binary_frame(data: bytes) -> None:
    check("v2.decode(bytes) arbitrary", V2, model_v2_binary, data)
    FED["v1.decode(bytes) arbitrary"] += 1
    with pytest.raises(InvalidMessageError):
        V1.decode(data)  # V1 has no binary frames


# ------------------------------------------------------------------ structured but wrong


@fuzz_settings(300)
@given(data=json_text(_v2_frames) | _deep)
def test_v2_text_frames_of_wrong_shapes(data: str) -> None:
    check_mutants("v2.decode(str) structured", V2, model_v2_text, data)


@fuzz_settings(300)
@given(data=json_text(v1_object() | _junk) | _deep)
def test_v1_text_frames_of_wrong_shapes(data: str) -> None:
    check_mutants("v1.decode(str) structured", V1, model_v1_text, data)


@fuzz_settings(300)
@given(data=binary_push())
def test_v2_binary_pushes_with_wrong_parts(data: bytes) -> None:
    check_mutants("v2.decode(bytes) structured", V2, model_v2_binary, data)


@fuzz_settings(200)
@given(value=st.sampled_from([bytearray, memoryview]), data=binary_push())
def test_v2_binary_decode_accepts_bytes_like(value: Any, data: bytes) -> None:
    FED["v2.decode(bytes-like)"] += 1
    assert decode_or_invalid(V2, value(data)) == model_v2_binary(data)


@pytest.mark.parametrize("serializer", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize("value", [None, 1, 1.5, [], {}, object(), ["a"], Message("t", "e", {})])
def test_decode_of_a_non_frame_type_is_invalid(serializer: Any, value: Any) -> None:
    with pytest.raises(InvalidMessageError):
        serializer.decode(value)


# ------------------------------------------------------------------ mutations of valid frames

_SEEDS_TEXT = [
    '["1","1","rooms:lobby","phx_join",{}]',
    '[null,"2","phoenix","heartbeat",{}]',
    '["3","4","rooms:é","new_msg",{"body":"hi ☃","n":[1,2.5,-3e10,true,null]}]',
    '{"topic":"rooms:lobby","event":"phx_join","payload":{},"ref":"1"}',
    '{"topic":"t","event":"e","payload":{"a":{"b":[1]}},"ref":null,"join_ref":"9"}',
]
_SEEDS_BINARY = [
    bytes([0, 1, 1, 3, 1]) + b"12t:1e" + b"\x00\xff data",
    bytes([0, 0, 0, 0, 0]),
    bytes([0, 2, 0, 8, 4]) + b"42" + "rooms:☃".encode() + b"ping" + bytes(range(256)),
]


def test_mutated_text_frames() -> None:
    rng = make_rng("text")
    donors = [seed.encode() for seed in _SEEDS_TEXT]
    for _ in range(count(10_000, weight=0.5)):
        raw = mutate(rng.choice(donors), rng, donors)
        # Invalid UTF-8 reaches decode as lone surrogates or replacement characters.
        data = raw.decode("utf-8", "surrogateescape" if rng.random() < 0.5 else "replace")
        check("v2.decode(str) mutated", V2, model_v2_text, data)
        check("v1.decode(str) mutated", V1, model_v1_text, data)


def test_mutated_binary_frames() -> None:
    rng = make_rng("binary")
    for _ in range(count(10_000, weight=0.5)):
        data = mutate(rng.choice(_SEEDS_BINARY), rng, _SEEDS_BINARY)
        check("v2.decode(bytes) mutated", V2, model_v2_binary, data)


# ------------------------------------------------------------------ round trips

# Beyond tests/unit/test_serializers.py's: payloads of any mapping orjson writes
# (ints to 64 bits, non-str keys, NaN, deep nesting), which must either encode
# to a frame that reads back as orjson reads that payload, or raise the
# documented TypeError/ValueError; and server replies read back as client frames.
_wide_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.integers()
    | st.floats()
    | st.text(st.characters(), max_size=10)
)
_wide_key = st.text(st.characters(), max_size=10) | st.integers(-5, 5) | st.booleans()
_wide = st.recursive(
    _wide_scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_wide_key, inner, max_size=3),
    max_leaves=12,
)
_wide_payload = st.dictionaries(_wide_key, _wide, max_size=4) | st.integers(200, 300).map(
    lambda depth: {"deep": json.loads("[" * depth + "]" * depth)}
)


def _as_json(payload: Any) -> Any:
    return orjson.loads(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS))


@fuzz_settings(400)
@given(
    topic=_utf8_text, event=_utf8_text, ref=_ref_value, join_ref=_ref_value, payload=_wide_payload
)
def test_encode_then_decode_with_any_mapping(
    topic: str, event: str, ref: str | None, join_ref: str | None, payload: Any
) -> None:
    FED["v1/v2 encode->decode"] += 1
    try:
        expected = _as_json(payload)
    except TypeError:
        expected = None  # orjson cannot write it: the serializers must say so
    for serializer, message in (
        (V2, Message(topic, event, payload, ref, join_ref)),
        (V1, Message(topic, event, payload, ref)),
    ):
        if expected is None:
            with pytest.raises((TypeError, ValueError)):
                serializer.encode(message)
            continue
        assert serializer.decode(serializer.encode(message)) == message._replace(payload=expected)


@fuzz_settings(250)
@given(
    topic=_utf8_text, status=_utf8_text, ref=_ref_value, join_ref=_ref_value, payload=_wide_payload
)
def test_server_text_frames_read_back_as_messages(
    topic: str, status: str, ref: str | None, join_ref: str | None, payload: Any
) -> None:
    FED["v1/v2 reply+fastlane->decode"] += 1
    reply = Reply(topic, status, payload, ref, join_ref)
    try:
        expected = _as_json(payload)
        # As deep as in the frame: inside the reply's array (V2) or object (V1).
        response = _as_json([{"status": status, "response": payload}])[0]
    except TypeError:
        with pytest.raises((TypeError, ValueError)):
            V2.encode(reply)
        return
    assert V2.decode(V2.encode(reply)) == Message(topic, "phx_reply", response, ref, join_ref)
    assert V1.decode(V1.encode(reply)) == Message(topic, "phx_reply", response, ref)
    broadcast = Broadcast(topic, status, payload)
    assert V2.decode(V2.fastlane(broadcast)) == Message(topic, status, expected)
    assert V1.decode(V1.fastlane(broadcast)) == Message(topic, status, expected)
