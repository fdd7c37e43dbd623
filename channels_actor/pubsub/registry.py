"""The registry actor: topic subscriptions and local dispatch of broadcasts.

Theory of operation
-------------------
One actor owns the map ``topic -> {key: Subscriber}``. Subscribing,
unsubscribing and dispatching are messages to it, so they are applied in the
order they were told and a broadcast reaches each subscriber in publisher
order, exactly once per subscription key.

Dispatch follows Phoenix's fastlane: a channel subscriber that does not
intercept the event never sees the broadcast in its actor; the frame is encoded
once per serializer for the whole dispatch (on WebSockets framed once too, as a
``SharedFrame``) and handed to each subscriber's connection. Intercepted events
are told to the subscriber's channel actor (``handle_out``). Callback
subscribers (``Endpoint.subscribe``) are called on this actor's thread, so they
must be quick.

Broadcasts queued back to back are dispatched as one batch (up to ``BATCH``):
each connection then gets all of its fastlane frames from the batch in one
``send``. The first message of another kind ends the batch and is handled
right after it, so the registry still handles everything in the order told.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

from .._messages import DispatchOut
from .._pool import ServiceActor, handle_envelope
from ..transports.frames import SharedFrame

if TYPE_CHECKING:
    from pykka._envelope import Envelope

    from ..message import Broadcast
    from ..serializers import Serializer

BATCH = 64  # broadcasts gathered into one dispatch at most

__all__ = ["Dispatch", "Registry", "Subscribe", "Subscriber", "Unsubscribe", "UnsubscribeAll"]

logger = logging.getLogger("channels_actor.pubsub")


@dataclass(slots=True, eq=False)
class Subscriber:
    """One subscription. Exactly one of ``connection`` / ``callback`` decides delivery.

    Attributes:
        key: identifies the subscriber for ``broadcast_from`` exclusion and
            unsubscribing (a channel's ``ActorRef``, a callback, a connection).
        channel_ref: the channel actor that receives intercepted events.
        connection: where fastlane frames go (has ``send(frame)``).
        serializer: the connection's serializer.
        intercepts: events that go to ``channel_ref`` instead of the fastlane.
        callback: called with the ``Broadcast`` for plain subscribers.
    """

    key: Any
    channel_ref: pykka.ActorRef[Any] | None = None
    connection: Any = None
    serializer: Serializer | None = None
    intercepts: frozenset[str] = field(default_factory=frozenset)
    callback: Callable[[Broadcast], Any] | None = None


class Subscribe(NamedTuple):
    """Add ``subscriber`` to ``topic`` (replacing one with the same key)."""

    topic: str
    subscriber: Subscriber


class Unsubscribe(NamedTuple):
    """Remove the subscription of ``key`` from ``topic``."""

    topic: str
    key: Any


class UnsubscribeAll(NamedTuple):
    """Remove every subscription of ``key`` (a channel that ended)."""

    key: Any


class Dispatch(NamedTuple):
    """Deliver ``broadcast`` to the local subscribers of its topic, except ``from_key``."""

    broadcast: Broadcast
    from_key: Any


class Stats(NamedTuple):
    """Asked: returns ``(topics, subscriptions)`` counts."""


class Registry(ServiceActor):
    """The in-process subscription registry (one per :class:`PubSub`)."""

    thread_name = "channels_actor-pubsub"

    def __init__(self) -> None:
        super().__init__()
        self._topics: dict[str, dict[Any, Subscriber]] = {}
        self._held: Envelope[Any] | None = None
        self._by_key: dict[Any, set[str]] = {}

    def on_receive(self, message: Any) -> Any:
        if type(message) is Dispatch:
            self._dispatch(self._take_dispatches(message))
            held, self._held = self._held, None
            if held is not None:
                handle_envelope(self, held)
        elif isinstance(message, Subscribe):
            self._subscribe(message.topic, message.subscriber)
        elif isinstance(message, Unsubscribe):
            self._unsubscribe(message.topic, message.key)
        elif isinstance(message, UnsubscribeAll):
            for topic in self._by_key.pop(message.key, ()):
                self._remove(topic, message.key)
        elif isinstance(message, Stats):
            return (len(self._topics), sum(len(subs) for subs in self._topics.values()))
        else:
            return super().on_receive(message)
        return None

    def _subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._topics.setdefault(topic, {})[subscriber.key] = subscriber
        self._by_key.setdefault(subscriber.key, set()).add(topic)

    def _unsubscribe(self, topic: str, key: Any) -> None:
        topics = self._by_key.get(key)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._by_key[key]
        self._remove(topic, key)

    def _remove(self, topic: str, key: Any) -> None:
        subs = self._topics.get(topic)
        if subs is not None:
            subs.pop(key, None)
            if not subs:
                del self._topics[topic]

    def _take_dispatches(self, first: Dispatch) -> list[Dispatch]:
        """``first`` and the Dispatch tells queued right behind it (up to ``BATCH``).

        The first other message met is handled right after the batch, so the
        order of everything told to the registry is kept.
        """
        batch = [first]
        inbox = self.actor_inbox
        while len(batch) < BATCH:
            try:
                envelope = inbox.get_nowait()  # type: ignore[attr-defined]
            except queue.Empty:
                break
            if type(envelope.message) is Dispatch and envelope.reply_to is None:
                batch.append(envelope.message)
            else:
                self._held = envelope
                break
        return batch

    def _dispatch(self, batch: list[Dispatch]) -> None:
        """Deliver a batch of broadcasts, each to its topic's subscribers, in order.

        Fastlane frames are gathered per connection across the batch and
        written with one ``send``: under load, a connection receives several
        broadcasts for the price of one system call.
        """
        out: dict[Any, list[SharedFrame]] = {}
        for message in batch:
            subs = self._topics.get(message.broadcast.topic)
            if subs:
                self._route(message.broadcast, message.from_key, subs, out)
        for connection, shareds in out.items():
            try:
                if len(shareds) == 1:
                    connection.send_shared(shareds[0])
                else:
                    connection.send_shared_many(shareds)
            except Exception:
                logger.exception("Writing broadcasts to %r failed", connection)

    @staticmethod
    def _route(
        broadcast: Broadcast,
        from_key: Any,
        subs: dict[Any, Subscriber],
        out: dict[Any, list[SharedFrame]],
    ) -> None:
        event = broadcast.event
        frames: dict[int, SharedFrame] = {}
        for sub in subs.values():
            if from_key is not None and sub.key == from_key:
                continue
            connection = sub.connection
            try:
                if connection is not None and event not in sub.intercepts:
                    serializer = sub.serializer
                    shared = frames.get(id(serializer))
                    if shared is None:
                        assert serializer is not None
                        shared = frames[id(serializer)] = SharedFrame(
                            serializer.fastlane(broadcast)
                        )
                    queued = out.get(connection)
                    if queued is None:
                        out[connection] = [shared]
                    else:
                        queued.append(shared)
                elif sub.channel_ref is not None:
                    sub.channel_ref.tell(DispatchOut(broadcast))
                elif sub.callback is not None:
                    sub.callback(broadcast)
            except pykka.ActorDeadError:
                continue  # the channel ended; its UnsubscribeAll is on its way
            except Exception:
                logger.exception(
                    "Delivering %r on %r to subscriber %r failed", event, broadcast.topic, sub.key
                )
