"""Coverage-guided fuzz targets for atheris (optional; the long form runs them when installed).

``python -m tests.fuzz.atheris_targets TARGET [libFuzzer flags]`` fuzzes one
target until ``-runs`` or ``-max_total_time`` is reached; a failure leaves the
crashing input where ``-artifact_prefix`` says. The oracles are the hypothesis
tests' own models, so both fuzzers check the same properties.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris

# Only the library and the oracles: instrumenting everything loaded
# (hypothesis included) takes half a minute per target.
with atheris.instrument_imports(include=["channels_actor", "tests.fuzz"]):
    from channels_actor import Channel, Message
    from channels_actor.protocol import ConnectionProtocol
    from channels_actor.serializers.v1_json import V1JSONSerializer
    from channels_actor.serializers.v2_json import V2JSONSerializer
    from tests.fuzz.test_http_fuzz import feed as feed_head
    from tests.fuzz.test_protocol_fuzz import Handler, Vip
    from tests.fuzz.test_serializers_fuzz import (
        check,
        model_v1_text,
        model_v2_binary,
        model_v2_text,
    )


V1 = V1JSONSerializer()
V2 = V2JSONSerializer()


def v2_text(data: bytes) -> None:
    check("atheris v2 text", V2, model_v2_text, data.decode("utf-8", "surrogateescape"))


def v1_text(data: bytes) -> None:
    check("atheris v1 text", V1, model_v1_text, data.decode("utf-8", "surrogateescape"))


def v2_binary(data: bytes) -> None:
    check("atheris v2 binary", V2, model_v2_binary, data)


def head(data: bytes) -> None:
    end = data.find(b"\r\n\r\n")
    feed_head("atheris parse_head", data[: end + 4] if end >= 0 else data + b"\r\n\r\n")


_TOPICS = ["room:1", "room:2", "room:vip", "lobby", "phoenix"]
_EVENTS = ["phx_join", "phx_leave", "heartbeat", "new_msg"]
_REFS = [None, "1", "2", "3"]


def protocol(data: bytes) -> None:
    """A message sequence read from the input; the invariants checked after each."""
    provider = atheris.FuzzedDataProvider(data)
    limit = provider.ConsumeIntInRange(0, 3)
    proto = ConnectionProtocol(Handler(), max_channels=limit)
    while provider.remaining_bytes():
        choice = provider.ConsumeIntInRange(0, 5)
        topic = _TOPICS[provider.ConsumeIntInRange(0, len(_TOPICS) - 1)]
        if choice == 5:
            proto.channel_exited(topic)
            continue
        event = _EVENTS[provider.ConsumeIntInRange(0, len(_EVENTS) - 1)]
        ref = _REFS[provider.ConsumeIntInRange(0, len(_REFS) - 1)]
        join_ref = _REFS[provider.ConsumeIntInRange(0, len(_REFS) - 1)]
        before = proto.topics
        channel: type[Channel] | None = Vip if choice == 4 else None
        actions = proto.receive(Message(topic, event, {}, ref, join_ref), channel)
        assert len(proto.topics) <= limit
        if topic == "phoenix" and event == "heartbeat":
            assert len(actions) == 1
            assert actions[0].reply.status == "ok"  # type: ignore[union-attr]
        stale = join_ref is not None and join_ref != before.get(topic)
        if (
            topic in before
            and event != "phx_join"
            and stale
            and not (topic == "phoenix" and event == "heartbeat")
        ):
            assert actions == []
            assert proto.topics == before


TARGETS: dict[str, Callable[[bytes], None]] = {
    "v2_text": v2_text,
    "v1_text": v1_text,
    "v2_binary": v2_binary,
    "parse_head": head,
    "protocol": protocol,
}


def main() -> None:
    name = sys.argv[1]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
