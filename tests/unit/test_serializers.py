"""Wire-format tests for the V1/V2 serializers and vsn negotiation.

Frames are compared byte for byte with what Phoenix's serializers and
phoenix.js produce and accept, because any difference breaks real clients.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels_actor import serializers
from channels_actor.errors import InvalidMessageError
from channels_actor.message import Broadcast, Message, Reply
from channels_actor.serializers import V1JSONSerializer, V2JSONSerializer, for_vsn
from channels_actor.serializers.base import encode_payload

V1 = V1JSONSerializer()
V2 = V2JSONSerializer()

# database=None: property tests must not write a .hypothesis directory into the tree.
PROPERTY = settings(max_examples=100, deadline=None, database=None)


# ---------------------------------------------------------------- helpers


def client_push(
    join_ref: str | None, ref: str | None, topic: str, event: str, data: bytes
) -> bytes:
    """Encode a kind-0 client->server binary frame as phoenix.js ``binaryEncode`` does."""
    fields = [(s or "").encode() for s in (join_ref, ref, topic, event)]
    return bytes([0, *map(len, fields)]) + b"".join(fields) + data


def read_server_binary(frame: bytes) -> dict[str, Any]:
    """Decode a server->client binary frame as phoenix.js ``binaryDecode`` does."""
    kind, offset = frame[0], 1
    counts = {0: 3, 1: 4, 2: 2}[kind]
    sizes = frame[offset : offset + counts]
    offset += counts
    fields = []
    for size in sizes:
        fields.append(frame[offset : offset + size].decode())
        offset += size
    data = frame[offset:]
    if kind == 0:
        join_ref, topic, event = fields
        return {"join_ref": join_ref, "ref": None, "topic": topic, "event": event, "payload": data}
    if kind == 1:
        join_ref, ref, topic, status = fields
        payload = {"status": status, "response": data}
        return {
            "join_ref": join_ref,
            "ref": ref,
            "topic": topic,
            "event": "phx_reply",
            "payload": payload,
        }
    topic, event = fields
    return {"join_ref": None, "ref": None, "topic": topic, "event": event, "payload": data}


# ---------------------------------------------------------------- V2 text frames


def test_v2_push_text_frame() -> None:
    frame = V2.encode(Message("room:1", "new_msg", {"body": "hi"}, ref=None, join_ref="3"))
    assert frame == '["3",null,"room:1","new_msg",{"body":"hi"}]'
    assert isinstance(frame, str)


def test_v2_message_with_both_refs_text_frame() -> None:
    frame = V2.encode(Message("room:1", "phx_close", {}, ref="3", join_ref="3"))
    assert frame == '["3","3","room:1","phx_close",{}]'


def test_v2_reply_text_frame() -> None:
    frame = V2.encode(Reply("room:1", "ok", {"n": 1}, ref="7", join_ref="3"))
    assert frame == '["3","7","room:1","phx_reply",{"status":"ok","response":{"n":1}}]'
    assert isinstance(frame, str)


def test_v2_heartbeat_reply_has_null_join_ref() -> None:
    frame = V2.encode(Reply("phoenix", "ok", {}, ref="9"))
    assert frame == '[null,"9","phoenix","phx_reply",{"status":"ok","response":{}}]'


def test_v2_fastlane_text_frame() -> None:
    frame = V2.fastlane(Broadcast("room:1", "new_msg", {"body": "hi"}))
    assert frame == '[null,null,"room:1","new_msg",{"body":"hi"}]'
    assert isinstance(frame, str)


def test_v2_fastlane_splices_encoded_payload() -> None:
    payload = {"body": "hi", "n": [1, 2.5, None], "u": "é☃"}
    spliced = V2.fastlane(Broadcast("room:1", "new_msg", payload, encode_payload(payload)))
    assert spliced == V2.fastlane(Broadcast("room:1", "new_msg", payload))
    assert isinstance(spliced, str)


def test_v2_fastlane_uses_encoded_payload_as_is() -> None:
    frame = V2.fastlane(Broadcast("t", "e", {"ignored": True}, b'{"cached":1}'))
    assert frame == '[null,null,"t","e",{"cached":1}]'


def test_v2_text_frames_keep_non_ascii_as_utf8() -> None:
    frame = V2.encode(Message("salle:é", "msg", {"k": "☃"}))
    assert frame == '[null,null,"salle:é","msg",{"k":"☃"}]'


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None])
def test_v2_push_payload_must_be_a_mapping(payload: Any) -> None:
    with pytest.raises(TypeError, match="mapping"):
        V2.encode(Message("t", "e", payload))
    with pytest.raises(TypeError, match="mapping"):
        V2.fastlane(Broadcast("t", "e", payload))


def test_v2_unserializable_reply_payload_raises_type_error() -> None:
    with pytest.raises(TypeError, match="reply payload"):
        V2.encode(Reply("t", "ok", {"x": object()}, ref="1"))


# ---------------------------------------------------------------- V2 binary frames


def test_v2_push_binary_frame_has_no_ref() -> None:
    frame = V2.encode(Message("room:1", "img", b"\x00\xffdata", ref="5", join_ref="12"))
    assert frame == b"\x00\x02\x06\x03" + b"12" + b"room:1" + b"img" + b"\x00\xffdata"
    assert read_server_binary(frame) == {
        "join_ref": "12",
        "ref": None,
        "topic": "room:1",
        "event": "img",
        "payload": b"\x00\xffdata",
    }


def test_v2_reply_binary_frame() -> None:
    frame = V2.encode(Reply("room:1", "ok", b"\x01\x02", ref="7", join_ref="3"))
    assert frame == b"\x01\x01\x01\x06\x02" + b"3" + b"7" + b"room:1" + b"ok" + b"\x01\x02"


def test_v2_broadcast_binary_frame() -> None:
    frame = V2.fastlane(Broadcast("room:1", "blob", b"\xde\xad"))
    assert frame == b"\x02\x06\x04" + b"room:1" + b"blob" + b"\xde\xad"


def test_v2_broadcast_binary_ignores_encoded_payload() -> None:
    frame = V2.fastlane(Broadcast("t", "e", b"raw", b"raw"))
    assert frame == b"\x02\x01\x01te" + b"raw"


def test_v2_binary_none_refs_encode_as_empty() -> None:
    assert V2.encode(Message("t", "e", b"")) == b"\x00\x00\x01\x01te"
    assert V2.encode(Reply("t", "ok", b"", ref=None)) == b"\x01\x00\x00\x01\x02tok"


def test_v2_binary_sizes_count_utf8_bytes() -> None:
    frame = V2.fastlane(Broadcast("é", "☃", b""))
    assert frame == b"\x02\x02\x03" + "é☃".encode()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("topic", lambda v: Message(v, "e", b"")),
        ("event", lambda v: Message("t", v, b"")),
        ("join_ref", lambda v: Message("t", "e", b"", join_ref=v)),
        ("topic", lambda v: Reply(v, "ok", b"", ref="1")),
        ("ref", lambda v: Reply("t", "ok", b"", ref=v)),
        ("join_ref", lambda v: Reply("t", "ok", b"", ref="1", join_ref=v)),
        ("status", lambda v: Reply("t", v, b"", ref="1")),
    ],
)
def test_v2_binary_field_over_255_bytes_raises(name: str, make: Any) -> None:
    assert isinstance(V2.encode(make("x" * 255)), bytes)
    with pytest.raises(ValueError, match=rf"{name}.*at most 255 bytes.*got 256 bytes"):
        V2.encode(make("x" * 256))
    with pytest.raises(ValueError, match="got 256 bytes"):
        V2.encode(make("é" * 128))  # 128 characters, 256 bytes


@pytest.mark.parametrize("field", ["topic", "event"])
def test_v2_broadcast_binary_field_over_255_bytes_raises(field: str) -> None:
    names = {"topic": "t", "event": "e", field: "x" * 256}
    with pytest.raises(ValueError, match=rf"{field}.*at most 255 bytes"):
        V2.fastlane(Broadcast(names["topic"], names["event"], b""))


def test_v2_text_frames_have_no_size_limit() -> None:
    frame = V2.encode(Message("x" * 300, "e", {}))
    assert isinstance(frame, str)


# ---------------------------------------------------------------- V2 decode


def test_v2_decode_text_frame() -> None:
    message = V2.decode('["3","4","room:1","new_msg",{"body":"hi"}]')
    assert message == Message("room:1", "new_msg", {"body": "hi"}, ref="4", join_ref="3")


def test_v2_decode_heartbeat_with_null_join_ref() -> None:
    message = V2.decode('[null,"5","phoenix","heartbeat",{}]')
    assert message == Message("phoenix", "heartbeat", {}, ref="5", join_ref=None)


def test_v2_decode_ignores_extra_elements() -> None:
    message = V2.decode('["1","2","t","e",{},"extra",7]')
    assert message == Message("t", "e", {}, ref="2", join_ref="1")


@pytest.mark.parametrize(
    ("text", "value"), [("[1,2]", [1, 2]), ('"s"', "s"), ("3", 3), ("null", None), ("true", True)]
)
def test_v2_decode_text_payload_may_be_any_json(text: str, value: Any) -> None:
    assert V2.decode(f'["1","2","t","e",{text}]').payload == value


def test_v2_decode_binary_push() -> None:
    message = V2.decode(client_push("3", "4", "room:1", "upload", b"\x00\x01\xff"))
    assert message == Message("room:1", "upload", b"\x00\x01\xff", ref="4", join_ref="3")
    assert type(message.payload) is bytes


def test_v2_decode_binary_empty_refs_become_none() -> None:
    message = V2.decode(client_push(None, None, "t", "e", b""))
    assert message == Message("t", "e", b"", ref=None, join_ref=None)


def test_v2_decode_binary_utf8_fields() -> None:
    message = V2.decode(client_push("1", "2", "salle:é", "☃", b"x"))
    assert (message.topic, message.event) == ("salle:é", "☃")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("not json", "Expected a JSON frame"),
        ("", "Expected a JSON frame"),
        ('{"topic":"t"}', "JSON array of at least 5 elements"),
        ('"text"', "JSON array of at least 5 elements"),
        ('["1","2","t","e"]', "JSON array of at least 5 elements"),
        ("[]", "JSON array of at least 5 elements"),
        ('["1","2",3,"e",{}]', "topic .* to be a string"),
        ('["1","2",null,"e",{}]', "topic .* to be a string"),
        ('["1","2","t",["e"],{}]', "event .* to be a string"),
        ('["1",2,"t","e",{}]', "ref .* to be a string or null"),
        ('[{},"2","t","e",{}]', "join_ref .* to be a string or null"),
    ],
)
def test_v2_decode_malformed_text(frame: str, expected: str) -> None:
    with pytest.raises(InvalidMessageError, match=expected):
        V2.decode(frame)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (b"", "got an empty frame"),
        (b"\x01\x00\x00\x01\x02tok", "got kind 1"),
        (b"\x02\x01\x01te", "got kind 2"),
        (b"\x07", "got kind 7"),
        (b"\x00\x01\x01", "5 header bytes.*got 3 bytes"),
        (b"\x00\x01\x01\x01\x01abc", "at least 9 bytes.*got 8 bytes"),
        (b"\x00\xff\x00\x00\x00", "at least 260 bytes"),
        (b"\x00\x00\x00\x01\x01\xffe", "topic of a V2 binary push frame to be UTF-8"),
        (b"\x00\x01\x00\x01\x01\xc3te", "join_ref of a V2 binary push frame to be UTF-8"),
        (b"\x00\x00\x00\x01\x01t\xed\xa0\x80", "event of a V2 binary push frame to be UTF-8"),
    ],
)
def test_v2_decode_malformed_binary(frame: bytes, expected: str) -> None:
    with pytest.raises(InvalidMessageError, match=expected):
        V2.decode(frame)


def test_v2_decode_errors_show_what_was_received() -> None:
    with pytest.raises(InvalidMessageError) as info:
        V2.decode('["1","2","t"]')
    assert "[join_ref, ref, topic, event, payload]" in str(info.value)
    # What came, by shape and size: a frame's content may be a secret.
    assert "got a list of 3 items (in a text frame of 13 characters)" in str(info.value)
    assert '"t"' not in str(info.value)


def test_v2_decode_error_preview_is_bounded() -> None:
    with pytest.raises(InvalidMessageError) as info:
        V2.decode("[" + '"x",' * 10_000 + "1")
    assert len(str(info.value)) < 1000


def test_v2_decode_rejects_other_types() -> None:
    with pytest.raises(InvalidMessageError, match=r"str .* or bytes"):
        V2.decode(Message("t", "e", {}))  # type: ignore[arg-type]


# ---------------------------------------------------------------- V1


def test_v1_push_frame_has_no_join_ref() -> None:
    frame = V1.encode(Message("room:1", "new_msg", {"body": "hi"}, ref=None, join_ref="3"))
    assert frame == '{"topic":"room:1","event":"new_msg","payload":{"body":"hi"},"ref":null}'
    assert isinstance(frame, str)


def test_v1_close_frame_carries_ref() -> None:
    frame = V1.encode(Message("room:1", "phx_close", {}, ref="3", join_ref="3"))
    assert frame == '{"topic":"room:1","event":"phx_close","payload":{},"ref":"3"}'


def test_v1_reply_frame() -> None:
    frame = V1.encode(Reply("room:1", "error", {"reason": "x"}, ref="7", join_ref="3"))
    assert frame == (
        '{"topic":"room:1","event":"phx_reply",'
        '"payload":{"status":"error","response":{"reason":"x"}},"ref":"7"}'
    )


def test_v1_fastlane_frame() -> None:
    frame = V1.fastlane(Broadcast("room:1", "new_msg", {"body": "hi"}))
    assert frame == '{"topic":"room:1","event":"new_msg","payload":{"body":"hi"},"ref":null}'
    assert isinstance(frame, str)


def test_v1_fastlane_splices_encoded_payload() -> None:
    payload = {"body": "hi", "n": [1, 2.5, None], "u": "é☃"}
    spliced = V1.fastlane(Broadcast("room:1", "new_msg", payload, encode_payload(payload)))
    assert spliced == V1.fastlane(Broadcast("room:1", "new_msg", payload))
    assert V1.fastlane(Broadcast("t", "e", {}, b'{"cached":1}')) == (
        '{"topic":"t","event":"e","payload":{"cached":1},"ref":null}'
    )


@pytest.mark.parametrize(
    "value",
    [
        Message("t", "e", b"bin"),
        Reply("t", "ok", b"bin", ref="1"),
    ],
)
def test_v1_bytes_payload_raises_value_error(value: Message | Reply) -> None:
    with pytest.raises(ValueError, match="V1 has no binary frames"):
        V1.encode(value)


def test_v1_bytes_broadcast_raises_value_error() -> None:
    with pytest.raises(ValueError, match="V1 has no binary frames"):
        V1.fastlane(Broadcast("t", "e", b"bin"))


def test_v1_push_payload_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="mapping"):
        V1.encode(Message("t", "e", [1]))


def test_v1_decode() -> None:
    message = V1.decode('{"topic":"room:1","event":"new_msg","payload":{"a":1},"ref":"4"}')
    assert message == Message("room:1", "new_msg", {"a": 1}, ref="4", join_ref=None)


def test_v1_decode_accepts_join_ref() -> None:
    message = V1.decode('{"topic":"t","event":"e","payload":{},"ref":null,"join_ref":"2","x":1}')
    assert message == Message("t", "e", {}, ref=None, join_ref="2")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("nope", "Expected a JSON frame"),
        ('["1","2","t","e",{}]', "JSON object"),
        ('{"topic":"t","event":"e","payload":{}}', "lacks 'ref'"),
        ('{"event":"e","ref":null}', "lacks 'topic', 'payload'"),
        ('{"topic":1,"event":"e","payload":{},"ref":null}', "'topic' .* to be a string"),
        ('{"topic":"t","event":null,"payload":{},"ref":null}', "'event' .* to be a string"),
        ('{"topic":"t","event":"e","payload":{},"ref":4}', "'ref' .* to be a string or null"),
        (
            '{"topic":"t","event":"e","payload":{},"ref":"1","join_ref":[]}',
            "'join_ref' .* string or null",
        ),
    ],
)
def test_v1_decode_malformed(frame: str, expected: str) -> None:
    with pytest.raises(InvalidMessageError, match=expected):
        V1.decode(frame)


def test_v1_decode_rejects_binary_frames() -> None:
    with pytest.raises(InvalidMessageError, match="V1 has no binary frames"):
        V1.decode(client_push("1", "2", "t", "e", b"x"))


# ---------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("vsn", "expected"),
    [
        ("1.0.0", V1JSONSerializer),
        ("1.0.9", V1JSONSerializer),
        ("1.0.1-rc.1", V1JSONSerializer),
        ("2.0.0", V2JSONSerializer),
        ("2.0.7", V2JSONSerializer),
        ("2.0.0+build.5", V2JSONSerializer),
        ("2.0.3-dev", V2JSONSerializer),
        ("2.0.10", V2JSONSerializer),
        ("2.0.0-rc.1", None),  # a pre-release of 2.0.0 sorts below 2.0.0
        ("1.1.0", None),
        ("2.1.0", None),
        ("2.1.0-dev", None),
        ("3.0.0", None),
        ("0.0.1", None),
        ("2.0", None),
        ("2", None),
        ("2.0.0.0", None),
        ("02.0.0", None),
        ("2.00.0", None),
        ("2.0.01", None),
        ("2.0.1-01", None),
        ("2.0.1-", None),
        ("2.0.1-a..b", None),
        ("2.0.0+", None),
        ("v2.0.0", None),
        (" 2.0.0", None),
        ("2.0.0\n", None),
        ("\uff12.0.0", None),  # fullwidth digit two: Elixir accepts ASCII digits only
        ("abc", None),
        ("", None),
    ],
)
def test_for_vsn(vsn: str, expected: type | None) -> None:
    serializer = for_vsn(vsn)
    if expected is None:
        assert serializer is None
    else:
        assert type(serializer) is expected


def test_for_vsn_returns_shared_instances() -> None:
    assert for_vsn("2.0.0") is for_vsn("2.0.7")
    assert for_vsn("1.0.0") is for_vsn("1.0.3")


def test_vsn_attributes() -> None:
    assert (V1.vsn, V2.vsn) == ("1.0.0", "2.0.0")


def test_package_exports() -> None:
    for name in (
        "Frame",
        "NoopSerializer",
        "Serializer",
        "V1JSONSerializer",
        "V2JSONSerializer",
        "for_vsn",
    ):
        assert name in serializers.__all__
        assert hasattr(serializers, name)
    for public in (V1JSONSerializer, V2JSONSerializer, for_vsn):
        assert public.__doc__


# ---------------------------------------------------------------- properties

_chars = st.characters(codec="utf-8")  # no lone surrogates: they cannot be UTF-8 or JSON
_text = st.text(_chars, max_size=20)
_field = st.text(_chars, max_size=63)  # at most 252 UTF-8 bytes
_ref = st.none() | st.text(_chars, min_size=1, max_size=63)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_payload = st.dictionaries(_text, _json, max_size=5)


@PROPERTY
@given(
    topic=_text, event=_text, ref=st.none() | _text, join_ref=st.none() | _text, payload=_payload
)
def test_v2_text_round_trip(
    topic: str, event: str, ref: str | None, join_ref: str | None, payload: Any
) -> None:
    message = Message(topic, event, payload, ref=ref, join_ref=join_ref)
    frame = V2.encode(message)
    assert isinstance(frame, str)
    assert V2.decode(frame) == message


@PROPERTY
@given(topic=_field, event=_field, ref=_ref, join_ref=_ref, data=st.binary(max_size=64))
def test_v2_client_binary_round_trip(
    topic: str, event: str, ref: str | None, join_ref: str | None, data: bytes
) -> None:
    decoded = V2.decode(client_push(join_ref, ref, topic, event, data))
    assert decoded == Message(topic, event, data, ref=ref, join_ref=join_ref)


@PROPERTY
@given(topic=_field, event=_field, ref=_ref, join_ref=_ref, data=st.binary(max_size=64))
def test_v2_server_binary_frames_read_back(
    topic: str, event: str, ref: str | None, join_ref: str | None, data: bytes
) -> None:
    push = V2.encode(Message(topic, event, data, ref=ref, join_ref=join_ref))
    assert isinstance(push, bytes)
    assert read_server_binary(push) == {
        "join_ref": join_ref or "", "ref": None, "topic": topic, "event": event, "payload": data,
    }  # fmt: skip
    reply = V2.encode(Reply(topic, event, data, ref=ref, join_ref=join_ref))
    assert isinstance(reply, bytes)
    assert read_server_binary(reply)["payload"] == {"status": event, "response": data}
    assert read_server_binary(reply)["ref"] == (ref or "")
    broadcast = V2.fastlane(Broadcast(topic, event, data))
    assert isinstance(broadcast, bytes)
    assert read_server_binary(broadcast)["topic"] == topic


@PROPERTY
@given(topic=_text, event=_text, payload=_payload)
def test_fastlane_encoded_payload_gives_the_same_frame(
    topic: str, event: str, payload: Any
) -> None:
    cached = Broadcast(topic, event, payload, encode_payload(payload))
    plain = Broadcast(topic, event, payload)
    assert V2.fastlane(cached) == V2.fastlane(plain)
    assert V1.fastlane(cached) == V1.fastlane(plain)
    assert V2.decode(V2.fastlane(cached)) == Message(topic, event, payload)


@PROPERTY
@given(topic=_text, event=_text, ref=st.none() | _text, payload=_payload)
def test_v1_round_trip(topic: str, event: str, ref: str | None, payload: Any) -> None:
    message = Message(topic, event, payload, ref=ref)
    assert V1.decode(V1.encode(message)) == message
