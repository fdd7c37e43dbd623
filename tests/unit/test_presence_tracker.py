"""The tracker actor as a thin host: its window flushes on ``Flush``, not per change."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from channels_actor._timer import discard_stopped
from channels_actor.presence.state import AlreadyTracked
from channels_actor.presence.tracker import Flush, List, OwnerDown, Track, Tracker, Update

Published = queue.Queue[tuple[str, Any, Any]]


@pytest.fixture
def published() -> Published:
    return queue.Queue()


@pytest.fixture
def tracker(published: Published) -> Iterator[pykka.ActorRef[Tracker]]:
    # A window far longer than the test: only the Flush told here ends it.
    ref = Tracker.start("n1", lambda *diff: published.put(diff), 3600.0)
    try:
        yield ref
    finally:
        ref.stop()
        discard_stopped()  # the window's timer, as Endpoint.stop does


def ask(ref: pykka.ActorRef[Tracker], message: Any) -> Any:
    return ref.ask(message, block=True, timeout=5)


def test_changes_wait_for_the_window(tracker: pykka.ActorRef[Tracker], published: Published) -> None:
    first = ask(tracker, Track("ch1", "room", "alice", {}))
    ask(tracker, Track("ch2", "room", "bob", {}))
    ask(tracker, Update("ch1", "room", "alice", {"away": True}))
    assert published.empty()
    tracker.tell(Flush())
    ask(tracker, List("room"))  # a barrier: the flush has run
    topic, joins, leaves = published.get_nowait()
    assert (topic, sorted(joins), leaves) == ("room", ["alice", "bob"], {})
    assert joins["alice"]["metas"][0]["phx_ref_prev"] == first
    assert published.empty()


def test_errors_go_to_the_caller_and_the_tracker_goes_on(tracker: pykka.ActorRef[Tracker]) -> None:
    ask(tracker, Track("ch1", "room", "alice", {}))
    with pytest.raises(AlreadyTracked):
        ask(tracker, Track("ch1", "room", "alice", {}))
    tracker.tell(OwnerDown("ch1"))
    assert ask(tracker, List("room")) == {}
