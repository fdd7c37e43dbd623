"""Callback results are validated in one place, with Phoenix-shaped errors."""

from __future__ import annotations

import pytest

from channels_actor import CallbackReturnError, Socket
from channels_actor.results import (
    Continue,
    Joined,
    JoinRefused,
    Stop,
    normalize_handle_in,
    normalize_handle_out,
    normalize_join,
    normalize_reply,
)

S = Socket(topic="t")


def test_join_forms() -> None:
    assert normalize_join("RoomChannel", ("ok", S)) == Joined({}, S)
    assert normalize_join("RoomChannel", ("ok", {"a": 1}, S)) == Joined({"a": 1}, S)
    assert normalize_join("RoomChannel", ("error", {"reason": "x"})) == JoinRefused({"reason": "x"})


@pytest.mark.parametrize("bad", [None, "ok", ("ok",), ("ok", {}), ("error", "no"), ("okay", S), ("ok", [1], S)])
def test_bad_join_results(bad: object) -> None:
    with pytest.raises(CallbackReturnError) as info:
        normalize_join("RoomChannel", bad)
    text = str(info.value)
    assert text.startswith("Expected RoomChannel.join() to return one of:")
    assert '("ok", socket)' in text and f"got: {bad!r}" in text


def test_handle_in_forms() -> None:
    assert normalize_handle_in("C", ("noreply", S)) == Continue(S)
    assert normalize_handle_in("C", ("reply", "ok", S)) == Continue(S, ("ok", {}))
    assert normalize_handle_in("C", ("reply", ("error", {"e": 1}), S)) == Continue(S, ("error", {"e": 1}))
    assert normalize_handle_in("C", ("reply", ("ok", b"\x01"), S)) == Continue(S, ("ok", b"\x01"))
    assert normalize_handle_in("C", ("stop", "normal", S)) == Stop("normal", S)
    assert normalize_handle_in("C", ("stop", "normal", "ok", S)) == Stop("normal", S, ("ok", {}))


@pytest.mark.parametrize(
    "bad",
    [("norply", S), ("reply", ("ok", [1]), S), ("reply", 5, S), ("noreply",), ("stop", "x", 5, S), S, None],
)
def test_bad_handle_in_results(bad: object) -> None:
    with pytest.raises(CallbackReturnError, match=r"Expected C\.handle_in\(\) to return one of"):
        normalize_handle_in("C", bad)


def test_handle_out_and_info_forms() -> None:
    assert normalize_handle_out("C", ("noreply", S)) == Continue(S)
    assert normalize_handle_out("C", ("stop", ("shutdown", "x"), S)) == Stop(("shutdown", "x"), S)
    with pytest.raises(CallbackReturnError, match=r"C\.handle_info\(\)"):
        normalize_handle_out("C", ("reply", "ok", S), "handle_info")
    with pytest.raises(CallbackReturnError, match=r"C\.handle_out\(\)"):
        normalize_handle_out("C", None)


def test_reply_forms() -> None:
    assert normalize_reply("ok") == ("ok", {})
    assert normalize_reply(("custom", {"a": 1})) == ("custom", {"a": 1})
    assert normalize_reply(("ok", "text")) is None
    assert normalize_reply(3) is None
