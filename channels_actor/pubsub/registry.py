"""The registry actor: topic subscriptions and local dispatch of broadcasts.

Theory of operation
-------------------
One actor owns the subscriptions (``topic -> {key: Subscriber}``). Subscribing,
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

Who gets which bytes is the pure arithmetic of ``fanout.py``: frames built
once per group of subscribers that receive the same bytes, so the loop over a
thousand subscribers is a thousand ``send`` calls and little else. This actor
only feeds it from the inbox. Broadcasts queued back to back are dispatched as
one batch (up to ``BATCH``): each connection then gets all of its fastlane
frames from the batch in one ``send``. While a batch of one topic is being
written, the broadcasts on that topic told meanwhile join it (see
``fanout.Run.sweep``). The first message of another kind (or, while writing,
on another topic) ends the batch and is handled right after it, so the
registry still handles everything in the order told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import pykka

from .._pool import ServiceActor, handle_envelope
from .._redact import preview
from .fanout import SWEEP_CHECK, Run, Subscriptions

if TYPE_CHECKING:
    from pykka._envelope import Envelope

    from .._messages import DispatchOut
    from ..message import Broadcast
    from ..serializers import Serializer

BATCH = 64  # broadcasts gathered into one dispatch at most

__all__ = [
    "BATCH",
    "SWEEP_CHECK",
    "Dispatch",
    "Registry",
    "Stats",
    "Subscribe",
    "Subscriber",
    "Unsubscribe",
    "UnsubscribeAll",
]

logger = logging.getLogger("channels_actor.pubsub")


@dataclass(slots=True, eq=False)
class Subscriber:
    """One subscription. Exactly one of ``connection`` / ``callback`` decides delivery.

    Attributes:
        key: identifies the subscriber for ``broadcast_from`` exclusion and
            unsubscribing (a channel's ``ActorRef``, a callback, a connection).
        channel_ref: the channel actor that receives intercepted events.
        connection: where fastlane frames go (has ``send_shared(frames)``).
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
        self._subscriptions: Subscriptions[Subscriber] = Subscriptions(_hand_over)

    def on_receive(self, message: Any) -> Any:
        if type(message) is Dispatch:
            rest = self._dispatch(message)
            # A Dispatch on another topic that ended a sweep starts the next batch
            # here, in a loop: handled through handle_envelope, one would nest a
            # call per sweep and a steady stream could exhaust the stack.
            while rest is not None and _is_dispatch_told(rest):
                rest = self._dispatch(rest.message)
            if rest is not None:
                handle_envelope(self, rest)
        elif isinstance(message, Subscribe):
            self._subscriptions.subscribe(message.topic, message.subscriber)
        elif isinstance(message, Unsubscribe):
            self._subscriptions.unsubscribe(message.topic, message.key)
        elif isinstance(message, UnsubscribeAll):
            self._subscriptions.unsubscribe_all(message.key)
        elif isinstance(message, Stats):
            return self._subscriptions.counts()
        else:
            return super().on_receive(message)
        return None

    def _dispatch(self, first: Dispatch) -> Envelope[Any] | None:
        """Deliver ``first`` and the Dispatch tells queued behind it.

        Returns the first other envelope taken from the inbox meanwhile, which
        the caller handles next, or ``None``.
        """
        inbox = self.actor_inbox
        batch = [first]
        rest = _take_dispatches(inbox, batch, BATCH)
        if rest is not None or len(batch) == BATCH:
            self._subscriptions.dispatch(batch)
            return rest

        def grow(run: Run[Subscriber]) -> bool:
            nonlocal rest
            if inbox.empty():  # the usual case, checked many times a sweep: keep it cheap
                return True
            more: list[Dispatch] = []
            rest = _take_dispatches(inbox, more, BATCH - len(run), run.topic)
            run.extend(more)
            return rest is None and len(run) < BATCH

        self._subscriptions.dispatch(batch, grow)
        return rest


def _take_dispatches(
    inbox: Any, into: list[Dispatch], limit: int, topic: str | None = None
) -> Envelope[Any] | None:
    """Move the Dispatch tells queued in ``inbox`` now to ``into``, until it holds ``limit``.

    With ``topic``, only Dispatches on that topic are taken. Returns the first
    other envelope met (taken out of the inbox: the caller must handle it
    next, so that the order of everything told is kept), or ``None``.
    """
    while len(into) < limit and not inbox.empty():
        envelope: Envelope[Any] = inbox.get_nowait()  # this thread is its only reader
        if _is_dispatch_told(envelope) and (
            topic is None or envelope.message.broadcast.topic == topic
        ):
            into.append(envelope.message)
        else:
            return envelope
    return None


def _is_dispatch_told(envelope: Envelope[Any]) -> bool:
    """A Dispatch that nobody waits on (asked ones go through pykka's reply rules)."""
    return type(envelope.message) is Dispatch and envelope.reply_to is None


def _hand_over(sub: Subscriber, dispatch_out: DispatchOut) -> None:
    """To the channel actor (``handle_out``), or to a callback subscriber."""
    try:
        if sub.channel_ref is not None:
            sub.channel_ref.tell(dispatch_out)
        elif sub.callback is not None:
            sub.callback(dispatch_out.broadcast)
    except pykka.ActorDeadError:
        pass  # the channel ended; its UnsubscribeAll is on its way
    except Exception:
        logger.exception(
            "Delivering %s on %s to subscriber %s failed",
            preview(dispatch_out.broadcast.event),
            preview(dispatch_out.broadcast.topic),
            preview(sub.key),
        )
