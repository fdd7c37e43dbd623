"""The PubSub adapter seam on one node: the embedded adapter, and a PubSub's life
around an adapter that fails to start or delivers late.

The cluster behaviour every adapter must have is the contract suite in
``tests/cluster/test_adapter_contract.py``.
"""

from __future__ import annotations

import logging
import re

import pytest

from channels_actor.errors import BroadcastError, ConfigurationError
from channels_actor.message import Broadcast
from channels_actor.pubsub import EmbeddedAdapter, PubSub
from channels_actor.pubsub.adapter import Deliver
from tests.cluster.linked import TOPIC, Inbox


# the embedded adapter ---------------------------------------------------------


def test_the_embedded_adapter_names_the_node() -> None:
    assert PubSub("node-1").node_name == "node-1"
    assert PubSub(adapter=EmbeddedAdapter("node-2")).node_name == "node-2"
    assert re.fullmatch(r".+-\d+-\d+", PubSub().node_name)
    assert PubSub().node_name != PubSub().node_name


def test_node_name_and_adapter_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="give the name to the adapter"):
        PubSub("n", adapter=EmbeddedAdapter("n"))


def test_the_embedded_adapter_broadcasts_locally_and_knows_no_other_node() -> None:
    pubsub = PubSub("solo").start()
    try:
        inbox = Inbox().subscribe(pubsub)
        pubsub.broadcast(TOPIC, "all", {})
        pubsub.direct_broadcast("solo", TOPIC, "direct", {})
        assert [inbox.next_event() for _ in range(2)] == ["all", "direct"]
        with pytest.raises(
            BroadcastError,
            match="direct_broadcast to node 'other': this PubSub has no cluster adapter "
            "and knows only its own node 'solo'",
        ):
            pubsub.direct_broadcast("other", TOPIC, "direct", {})
    finally:
        pubsub.stop()


# lifecycle --------------------------------------------------------------------


class StartFails(EmbeddedAdapter):
    def start(self, deliver: Deliver) -> None:
        raise BroadcastError("cannot reach the cluster")


class KeepsDeliver(EmbeddedAdapter):
    """Keeps the PubSub's callback, to call it once the PubSub has stopped."""

    def __init__(self, node_name: str) -> None:
        super().__init__(node_name)
        self.delivers: list[Deliver] = []

    def start(self, deliver: Deliver) -> None:
        self.delivers.append(deliver)


def test_an_adapter_that_fails_to_start_leaves_no_registry_running() -> None:
    pubsub = PubSub(adapter=StartFails("n"))
    with pytest.raises(BroadcastError, match="cannot reach the cluster"):
        pubsub.start()
    with pytest.raises(BroadcastError, match="not running"):
        pubsub.broadcast(TOPIC, "e", {})
    # the autouse fixture checks that the registry's thread is gone


def test_a_late_delivery_to_a_stopped_pubsub_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = KeepsDeliver("n")
    pubsub = PubSub(adapter=adapter).start()
    pubsub.stop()
    with caplog.at_level(logging.WARNING, "channels_actor.pubsub"):
        adapter.delivers[0](Broadcast(TOPIC, "late", {}, b"{}"))
    assert "to a stopped PubSub; dropped" in caplog.text
