"""The sans-IO connection protocol: messages in, actions out, no threads or sockets."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import pytest

from channels_actor import Channel, Message, Reply, SocketHandler
from channels_actor._stats import Counters
from channels_actor.protocol import (
    ConnectionProtocol,
    DeliverLeave,
    DeliverToChannel,
    SendReply,
    ShutdownDuplicate,
    StartChannel,
)


class A(Channel):
    def join(self, topic: str, payload: Any, socket: Any) -> Any:
        return ("ok", socket)


class B(A):
    pass


class Handler(SocketHandler):
    channels = {"room:*": A, "room:vip": B}


def proto(max_channels: int = 100) -> ConnectionProtocol:
    return ConnectionProtocol(Handler(), max_channels=max_channels)


def join(topic: str, ref: str = "1", join_ref: str | None = "1") -> Message:
    return Message(topic, "phx_join", {}, ref, join_ref)


def test_heartbeat_is_answered_joined_or_not() -> None:
    p = proto()
    assert p.receive(Message("phoenix", "heartbeat", {}, "7")) == [
        SendReply(Reply("phoenix", "ok", {}, "7", None))
    ]


def test_join_starts_the_routed_channel() -> None:
    p = proto()
    msg = join("room:1")
    assert p.receive(msg) == [StartChannel(A, msg)]
    assert p.topics == {"room:1": "1"}
    vip = join("room:vip", "2", "2")
    assert p.receive(vip) == [StartChannel(B, vip)]


def test_join_without_route_is_unmatched_topic_with_null_join_ref() -> None:
    p = proto()
    assert p.receive(join("nope", "3", "3")) == [
        SendReply(Reply("nope", "error", {"reason": "unmatched topic"}, "3", None))
    ]
    assert p.topics == {}


def test_explicit_channel_overrides_routing() -> None:
    p = proto()
    msg = join("anything")
    assert p.receive(msg, B) == [StartChannel(B, msg)]


def test_duplicate_join_shuts_the_old_one_down_first() -> None:
    p = proto()
    p.receive(join("room:1", "1", "1"))
    again = join("room:1", "5", "5")
    assert p.receive(again) == [ShutdownDuplicate("room:1", "1"), StartChannel(A, again)]
    assert p.topics == {"room:1": "5"}


def test_channel_limit() -> None:
    p = proto(max_channels=1)
    p.receive(join("room:1"))
    assert p.receive(join("room:2", "2", "2")) == [
        SendReply(Reply("room:2", "error", {"reason": "too many channels joined"}, "2", "2"))
    ]
    # a duplicate join frees its own slot first
    again = join("room:1", "3", "3")
    assert p.receive(again) == [ShutdownDuplicate("room:1", "1"), StartChannel(A, again)]


def test_messages_for_a_joined_topic() -> None:
    p = proto()
    p.receive(join("room:1", "1", "1"))
    push = Message("room:1", "new_msg", {"a": 1}, "2", "1")
    assert p.receive(push) == [DeliverToChannel(push)]
    nil_join_ref = Message("room:1", "new_msg", {}, "3", None)
    assert p.receive(nil_join_ref) == [DeliverToChannel(nil_join_ref)]
    leave = Message("room:1", "phx_leave", {}, "4", "1")
    assert p.receive(leave) == [DeliverLeave(leave)]


def test_stale_join_ref_is_ignored_silently() -> None:
    p = proto()
    p.receive(join("room:1", "1", "1"))
    assert p.receive(Message("room:1", "new_msg", {}, "2", "0")) == []
    assert p.receive(Message("room:1", "phx_leave", {}, "3", "0")) == []


def test_unjoined_topic() -> None:
    p = proto()
    assert p.receive(Message("room:9", "phx_leave", {}, "4", "2")) == [
        SendReply(Reply("room:9", "ok", {}, "4", "2"))
    ]
    assert p.receive(Message("room:9", "new_msg", {}, "5", "2")) == [
        SendReply(Reply("room:9", "error", {"reason": "unmatched topic"}, "5", None))
    ]


def test_channel_exited_frees_the_topic() -> None:
    p = proto()
    p.receive(join("room:1"))
    p.channel_exited("room:1")
    assert p.topics == {}
    p.channel_exited("room:1")  # idempotent


def test_join_of_a_topic_over_max_topic_size_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    p = ConnectionProtocol(Handler(), max_topic_size=16, counters=counters)
    exact = "room:" + "x" * 11  # 16 bytes
    assert p.receive(join(exact)) == [StartChannel(A, join(exact))]
    long = "room:" + "x" * 12  # 17 bytes
    with caplog.at_level(logging.WARNING, logger="channels_actor.protocol"):
        assert p.receive(join(long, "2", "2")) == [
            SendReply(Reply(long, "error", {"reason": "topic too long"}, "2", "2"))
        ]
    assert p.topics == {exact: "1"}
    assert "17 bytes (max_topic_size 16)" in caplog.text
    assert counters.get("joins_refused_topic_too_long") == 1
    # Never joined, so the topic's other events are the usual unmatched topic.
    assert p.receive(Message(long, "new_msg", {}, "3", "2")) == [
        SendReply(Reply(long, "error", {"reason": "unmatched topic"}, "3", None))
    ]


def test_max_topic_size_counts_utf8_bytes() -> None:
    p = ConnectionProtocol(Handler(), max_topic_size=16)
    wide = "room:" + "\u00e9" * 6  # 11 characters, 17 bytes
    assert p.receive(join(wide))[0] == SendReply(
        Reply(wide, "error", {"reason": "topic too long"}, "1", "1")
    )
    lone = "room:" + "\ud800" * 4  # a lone surrogate from JSON: 3 bytes each, counted, no crash
    assert p.receive(join(lone)) == [
        SendReply(Reply(lone, "error", {"reason": "topic too long"}, "1", "1"))
    ]


def test_default_max_topic_size_is_1_kib_and_the_log_line_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = proto()
    ok = "room:" + "x" * (1024 - 5)
    assert p.receive(join(ok)) == [StartChannel(A, join(ok))]
    huge = "room:" + "token=SECRET" + "x" * 1_000_000
    with caplog.at_level(logging.DEBUG, logger="channels_actor.protocol"):
        [action] = p.receive(join(huge, "2", "2"))
        p.receive(Message(huge, "new_msg", {}, "3", None))
    assert isinstance(action, SendReply) and action.reply.payload == {"reason": "topic too long"}
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert len(record.getMessage()) < 300
        assert "SECRET" not in record.getMessage()
    assert "(a string of 1000017 characters)" in caplog.records[0].getMessage()


@pytest.mark.parametrize("module", ["protocol.py", "serializers/base.py", "serializers/v1_json.py",
                                    "serializers/v2_json.py", "serializers/noop.py", "message.py",
                                    "results.py", "_redact.py"])
def test_sans_io_modules_import_no_io(module: str) -> None:
    source = (Path(__file__).parents[2] / "channels_actor" / module).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "threading", "pykka", "simple_websocket", "select", "asyncio"}
