"""Test doubles for the PubSub adapter seam that are real implementations, not mocks.

``LinkedAdapter`` links PubSubs in one process as a cluster: the nodes share a
``Wire`` (what a Redis channel is to the Redis adapter), every message crosses
it as bytes and is rebuilt on arrival on the receiving adapter's own thread,
then handed to that node's PubSub. ``Inbox`` and ``Connection`` are callback
and fastlane subscribers that put what they get on queues. To show that
something did *not* arrive, a marker is published after it from the same
publisher: per-publisher order makes the marker the next thing to come.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from channels_actor.errors import BroadcastError
from channels_actor.message import Broadcast
from channels_actor.pubsub import PubSub, Subscriber
from channels_actor.pubsub.adapter import Deliver
from channels_actor.serializers.base import decode_json
from channels_actor.transports.frames import SharedFrames

WAIT = 5.0
TOPIC = "room:cluster"

#: What crosses the wire: (topic, event, payload bytes, binary?).
WireMessage = tuple[str, str, bytes, bool]


class Wire:
    """The medium linking the nodes: each running node's inbox, by node name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: dict[str, queue.SimpleQueue[WireMessage | None]] = {}

    def join(self, node_name: str, inbox: queue.SimpleQueue[WireMessage | None]) -> None:
        with self._lock:
            assert node_name not in self._inboxes, f"two nodes named {node_name!r}"
            self._inboxes[node_name] = inbox

    def leave(self, node_name: str) -> None:
        with self._lock:
            self._inboxes.pop(node_name, None)

    def others(self, node_name: str) -> list[queue.SimpleQueue[WireMessage | None]]:
        with self._lock:
            return [inbox for name, inbox in self._inboxes.items() if name != node_name]

    def inbox(self, node_name: str) -> queue.SimpleQueue[WireMessage | None] | None:
        with self._lock:
            return self._inboxes.get(node_name)


class LinkedAdapter:
    """A cluster adapter over a :class:`Wire`, receiving on a thread of its own."""

    def __init__(self, wire: Wire, node_name: str) -> None:
        self._wire = wire
        self._node_name = node_name
        self._inbox: queue.SimpleQueue[WireMessage | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def node_name(self) -> str:
        return self._node_name

    def start(self, deliver: Deliver) -> None:
        self._thread = threading.Thread(
            target=self._receive, args=(deliver,), name=f"LinkedAdapter-{self._node_name}"
        )
        self._thread.start()
        self._wire.join(self._node_name, self._inbox)

    def stop(self, timeout: float) -> None:
        self._wire.leave(self._node_name)
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join(timeout)
            self._thread = None

    def broadcast(self, broadcast: Broadcast) -> None:
        message = _to_wire(broadcast)
        for inbox in self._wire.others(self._node_name):
            inbox.put(message)

    def direct_broadcast(self, node_name: str, broadcast: Broadcast) -> None:
        inbox = self._wire.inbox(node_name)
        if inbox is None:
            raise BroadcastError(f"no node {node_name!r} on the wire")
        inbox.put(_to_wire(broadcast))

    def stats(self) -> dict[str, float]:
        return {}

    def backlog(self) -> int:
        return 0

    def _receive(self, deliver: Deliver) -> None:
        while (message := self._inbox.get()) is not None:
            deliver(_from_wire(message))

    def __repr__(self) -> str:
        return f"<LinkedAdapter {self._node_name!r}>"


def _to_wire(broadcast: Broadcast) -> WireMessage:
    """The already-encoded payload as it is: JSON bytes, or the binary payload."""
    if broadcast.encoded_payload is None:
        assert isinstance(broadcast.payload, bytes)
        return (broadcast.topic, broadcast.event, broadcast.payload, True)
    return (broadcast.topic, broadcast.event, broadcast.encoded_payload, False)


def _from_wire(message: WireMessage) -> Broadcast:
    """Rebuild the Broadcast: the received JSON stays its ``encoded_payload``."""
    topic, event, data, binary = message
    if binary:
        return Broadcast(topic, event, data)
    return Broadcast(topic, event, decode_json(data), data)


class Inbox:
    """A callback subscriber: what it receives, on a queue.

    Args:
        key: its subscription key (``broadcast_from`` excludes by it); itself by default.
    """

    def __init__(self, key: object = None) -> None:
        self.key = self if key is None else key
        self.received: queue.SimpleQueue[Broadcast] = queue.SimpleQueue()

    def subscribe(self, pubsub: PubSub, topic: str = TOPIC) -> Inbox:
        pubsub.subscribe(topic, Subscriber(key=self.key, callback=self.received.put))
        return self

    def next(self) -> Broadcast:
        return self.received.get(timeout=WAIT)

    def next_event(self) -> str:
        return self.next().event


class Connection:
    """A fastlane subscriber: the frames of its ``send_shared`` calls, on a queue."""

    def __init__(self) -> None:
        self.frames: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def send_shared(self, shared: SharedFrames) -> None:
        for one in shared.frames:
            self.frames.put(one.frame)
