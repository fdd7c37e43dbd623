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

A topic keeps its connection subscribers in groups that receive the same
bytes: one serializer, one set of intercepted events. Dispatch builds the
frames once per group and then only hands that one buffer to each member, so
the loop over a thousand subscribers is a thousand ``send`` calls and little
else. Broadcasts queued back to back are dispatched as one batch (up to
``BATCH``): each connection then gets all of its fastlane frames from the batch
in one ``send``. The first message of another kind ends the batch and is
handled right after it, so the registry still handles everything in the order
told.
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
from .._redact import preview
from ..transports.frames import SharedFrame, SharedFrames

if TYPE_CHECKING:
    from pykka._envelope import Envelope

    from ..message import Broadcast
    from ..serializers import Serializer

BATCH = 64  # broadcasts gathered into one dispatch at most
SWEEP_CHECK = 16  # subscribers written between looks at the inbox during a sweep

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


class _Group:
    """A topic's connection subscribers that receive the same frames."""

    __slots__ = ("intercepts", "members", "serializer")

    def __init__(self, serializer: Serializer | None, intercepts: frozenset[str]) -> None:
        self.serializer = serializer
        self.intercepts = intercepts
        # key -> (subscription, its connection's send_shared)
        self.members: dict[Any, tuple[Subscriber, Callable[[SharedFrames], None]]] = {}


class _Topic:
    """One topic's subscriptions, grouped the way dispatch uses them."""

    __slots__ = ("groups", "others", "subs")

    def __init__(self) -> None:
        self.subs: dict[Any, Subscriber] = {}
        self.groups: dict[tuple[int, frozenset[str]], _Group] = {}
        self.others: dict[Any, Subscriber] = {}  # callbacks, channels without a connection

    def add(self, sub: Subscriber) -> None:
        self.remove(sub.key)
        self.subs[sub.key] = sub
        if sub.connection is None:
            self.others[sub.key] = sub
            return
        group_key = (id(sub.serializer), sub.intercepts)
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = _Group(sub.serializer, sub.intercepts)
        group.members[sub.key] = (sub, sub.connection.send_shared)

    def remove(self, key: Any) -> None:
        sub = self.subs.pop(key, None)
        if sub is None:
            return
        if sub.connection is None:
            del self.others[key]
            return
        group_key = (id(sub.serializer), sub.intercepts)
        group = self.groups[group_key]
        del group.members[key]
        if not group.members:
            del self.groups[group_key]


_Payload = tuple["SharedFrames | None", list[DispatchOut]]
#: Each connection's frames from a batch of several topics, in order.
_Gathered = dict[Callable[[SharedFrames], None], list[SharedFrames]]


class _Run:
    """Broadcasts on one topic being dispatched, and what each group gets of them.

    A member of a group gets ``dispatches[start:end]`` as one ``SharedFrames``
    (its fastlane frames) and a list of ``DispatchOut`` (its intercepted
    events). The dispatch builds them once per group and range and hands the
    same objects to every member; each broadcast is encoded once per
    serializer. Only a subscriber excluded by a ``broadcast_from`` in the
    range gets a list of its own.
    """

    __slots__ = ("dispatches", "encoded", "excluded", "state", "topic")

    def __init__(self, state: _Topic, dispatches: list[Dispatch]) -> None:
        self.state = state
        self.topic = dispatches[0].broadcast.topic
        self.dispatches = dispatches
        self.excluded = {m.from_key for m in dispatches if m.from_key is not None}
        self.encoded: dict[tuple[int, int], SharedFrame | None] = {}

    def append(self, message: Dispatch) -> None:
        self.dispatches.append(message)
        if message.from_key is not None:
            self.excluded.add(message.from_key)

    def payload(self, group: _Group, start: int, end: int, key: Any = None) -> _Payload:
        """What a member of ``group`` gets of ``dispatches[start:end]``.

        ``key``: the member, when it is excluded by a ``broadcast_from``
        (``None``: any member that is not).
        """
        frames: list[SharedFrame] = []
        outs: list[DispatchOut] = []
        intercepts = group.intercepts
        for index in range(start, end):
            message = self.dispatches[index]
            if key is not None and message.from_key == key:
                continue
            if message.broadcast.event in intercepts:
                outs.append(DispatchOut(message.broadcast))
            else:
                frame = self._frame(index, group.serializer)
                if frame is not None:
                    frames.append(frame)
        return (SharedFrames(frames) if frames else None, outs)

    def _frame(self, index: int, serializer: Serializer | None) -> SharedFrame | None:
        """The fastlane frame of one broadcast for ``serializer``, encoded once."""
        cache_key = (index, id(serializer))
        try:
            return self.encoded[cache_key]
        except KeyError:
            pass
        assert serializer is not None
        broadcast = self.dispatches[index].broadcast
        try:
            frame: SharedFrame | None = SharedFrame(serializer.fastlane(broadcast))
        except Exception:
            logger.exception(
                "Encoding %s on %s with %r failed; its subscribers miss it",
                preview(broadcast.event),
                preview(broadcast.topic),
                serializer,
            )
            frame = None
        self.encoded[cache_key] = frame
        return frame


class Registry(ServiceActor):
    """The in-process subscription registry (one per :class:`PubSub`)."""

    thread_name = "channels_actor-pubsub"

    def __init__(self) -> None:
        super().__init__()
        self._topics: dict[str, _Topic] = {}
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
            return (len(self._topics), sum(len(t.subs) for t in self._topics.values()))
        else:
            return super().on_receive(message)
        return None

    def _subscribe(self, topic: str, subscriber: Subscriber) -> None:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        state.add(subscriber)
        self._by_key.setdefault(subscriber.key, set()).add(topic)

    def _unsubscribe(self, topic: str, key: Any) -> None:
        topics = self._by_key.get(key)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._by_key[key]
        self._remove(topic, key)

    def _remove(self, topic: str, key: Any) -> None:
        state = self._topics.get(topic)
        if state is not None:
            state.remove(key)
            if not state.subs:
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

        The batch is cut into runs of one topic. A batch of one run (the usual
        case: one busy topic) is swept (:meth:`_sweep`); otherwise each
        connection's frames from every run are gathered and written with one
        ``send``, in the order published.
        """
        runs: list[list[Dispatch]] = []
        topic = None
        for message in batch:
            if message.broadcast.topic != topic:
                topic = message.broadcast.topic
                runs.append([])
            runs[-1].append(message)
        if len(runs) == 1:
            state = self._topics.get(runs[0][0].broadcast.topic)
            if state is not None:
                self._sweep(_Run(state, runs[0]))
            return
        out: _Gathered = {}
        for run in runs:
            state = self._topics.get(run[0].broadcast.topic)
            if state is not None:
                self._gather(_Run(state, run), out)
        for send, parts in out.items():
            self._send(send, parts[0] if len(parts) == 1 else SharedFrames.concat(parts))

    def _sweep(self, run: _Run) -> None:
        """Write a run to every connection subscriber, taking in broadcasts that arrive meanwhile.

        Writing to a thousand sockets takes milliseconds. Every ``SWEEP_CHECK``
        subscribers, broadcasts on the same topic that were queued meanwhile
        join the run: the subscribers not yet written to get them in this
        pass, the ones already written to in another pass. A broadcast then
        waits for the writer to reach its subscriber, not for a whole
        dispatch to finish first. The run stops growing at ``BATCH``
        broadcasts or at the first other message, which is handled after it.
        """
        self._to_others(run, 0)
        targets = [
            (group, key, sub, send)
            for group in run.state.groups.values()
            for key, (sub, send) in group.members.items()
        ]
        dispatches = run.dispatches
        excluded = run.excluded
        served = [0] * len(targets)
        extending = self._held is None and len(dispatches) < BATCH
        behind = True
        while behind:
            behind = False
            # A group's members are consecutive in targets and mostly share their
            # range: the payload built for one serves the next until either changes.
            last: tuple[Any, int, int] | None = None
            shared: SharedFrames | None = None
            outs: list[DispatchOut] = []
            for index, (group, key, sub, send) in enumerate(targets):
                start, end = served[index], len(dispatches)
                if start < end:
                    served[index] = end
                    if key in excluded:
                        mine, my_outs = run.payload(group, start, end, key)
                    else:
                        if (
                            last is None
                            or last[0] is not group
                            or last[1] != start
                            or last[2] != end
                        ):
                            last = (group, start, end)
                            shared, outs = run.payload(group, start, end)
                        mine, my_outs = shared, outs
                    if mine is not None:
                        try:
                            send(mine)
                        except Exception:
                            logger.exception("Writing broadcasts with %r failed", send)
                    for dispatch_out in my_outs:
                        self._hand_over(sub, dispatch_out)
                if extending and index % SWEEP_CHECK == SWEEP_CHECK - 1:
                    if self._extend(run):
                        behind = True  # the subscribers before this point miss the new ones
                    extending = self._held is None and len(dispatches) < BATCH

    def _extend(self, run: _Run) -> bool:
        """Add the Dispatch tells on the run's topic queued now; True if any was added."""
        inbox = self.actor_inbox
        dispatches = run.dispatches
        added = False
        while len(dispatches) < BATCH:
            try:
                envelope = inbox.get_nowait()  # type: ignore[attr-defined]
            except queue.Empty:
                break
            message = envelope.message
            if (
                type(message) is Dispatch
                and envelope.reply_to is None
                and message.broadcast.topic == run.topic
            ):
                run.append(message)
                self._to_others(run, len(dispatches) - 1)
                added = True
            else:
                self._held = envelope
                break
        return added

    def _gather(self, run: _Run, out: _Gathered) -> None:
        """Collect a run's frames per connection in ``out`` (a batch of several topics)."""
        self._to_others(run, 0)
        end = len(run.dispatches)
        for group in run.state.groups.values():
            shared, outs = run.payload(group, 0, end)
            for key, (sub, send) in group.members.items():
                mine, my_outs = (
                    run.payload(group, 0, end, key) if key in run.excluded else (shared, outs)
                )
                if mine is not None:
                    out.setdefault(send, []).append(mine)
                for dispatch_out in my_outs:
                    self._hand_over(sub, dispatch_out)

    def _to_others(self, run: _Run, start: int) -> None:
        """Callback subscribers and channels without a connection get ``dispatches[start:]``."""
        others = run.state.others
        if not others:
            return
        for message in run.dispatches[start:]:
            dispatch_out = DispatchOut(message.broadcast)
            for key, sub in others.items():
                if message.from_key is None or key != message.from_key:
                    self._hand_over(sub, dispatch_out)

    @staticmethod
    def _send(send: Callable[[SharedFrames], None], shared: SharedFrames) -> None:
        try:
            send(shared)
        except Exception:
            logger.exception("Writing broadcasts with %r failed", send)

    @staticmethod
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
