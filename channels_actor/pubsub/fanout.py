"""Fan-out arithmetic: which subscriber gets which of a topic's broadcasts.

Pure: no threads, no actors, no inbox. The registry actor (``registry.py``)
owns one :class:`Subscriptions`, applies subscribe messages to it and hands it
the broadcasts it takes from its inbox; everything here runs on the registry's
thread, so nothing changes under a dispatch.

Theory of operation
-------------------
- A topic keeps its connection subscribers in groups that receive the same
  bytes: one serializer, one set of intercepted events. Subscribers without a
  connection (callbacks, channels served in memory) are kept apart, as
  "others", and get every broadcast as a :class:`DispatchOut`.
- Broadcasts on one topic told back to back form a :class:`Run`. A member of a
  group gets ``dispatches[start:end]`` of it as one ``SharedFrames`` (its
  fastlane frames) and a list of ``DispatchOut`` (its intercepted events).
  Both are built once per group and range and the same objects are handed to
  every member; each broadcast is encoded once per serializer. Only a member
  excluded by a ``broadcast_from`` in the range gets lists of its own.
- A batch that is one run is swept: the connection members are taken in blocks
  of ``SWEEP_CHECK``, and between blocks the caller may grow the run with the
  broadcasts on its topic that arrived meanwhile. The blocks not yet reached
  get them in this pass; the ones before get them in another pass. A
  broadcast then waits for the writer to reach its subscriber, not for a
  whole dispatch to finish.
- A batch of several topics is gathered instead: each connection's frames
  from every run are joined and written with one ``send``, in publish order.
- Delivery goes out through two doors: frames to ``connection.send_shared``
  (a failure is logged and the others still get theirs), and intercepted or
  other deliveries to the ``hand_over`` callable the owner gave (for the
  registry: tell the channel actor, or call the callback).

The loop over a thousand members of a group is a thousand ``send`` calls and
little else: the blocks are built once per membership change, not per
dispatch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._messages import DispatchOut
from .._redact import preview
from ..transports.frames import SharedFrame, SharedFrames

if TYPE_CHECKING:
    from ..message import Broadcast
    from ..serializers import Serializer

__all__ = [
    "SWEEP_CHECK",
    "Connection",
    "Grow",
    "HandOver",
    "Member",
    "Published",
    "Run",
    "Subscriptions",
]

SWEEP_CHECK = 16  # members written between chances to grow a run during a sweep

# The registry's logger: these records are about its dispatch.
logger = logging.getLogger("channels_actor.pubsub")


class Connection(Protocol):
    """Where a member's fastlane frames go (a connection's transport side)."""

    def send_shared(self, shared: SharedFrames) -> None:
        """Write frames shared with other connections (called on the dispatching thread)."""


class Member(Protocol):
    """What the fan-out reads of a subscription (the registry's ``Subscriber``)."""

    @property
    def key(self) -> Any:
        """Identifies the member for ``broadcast_from`` exclusion and unsubscribing."""

    @property
    def connection(self) -> Connection | None:
        """Its connection, or ``None`` for a member that only takes hand-overs."""

    @property
    def serializer(self) -> Serializer | None:
        """The connection's serializer (unused without a connection)."""

    @property
    def intercepts(self) -> frozenset[str]:
        """Events handed over instead of written to the connection."""


class Published(Protocol):
    """One broadcast to deliver (the registry's ``Dispatch``)."""

    @property
    def broadcast(self) -> Broadcast:
        """The broadcast as published."""

    @property
    def from_key(self) -> Any:
        """The member that does not get it (``broadcast_from``), or ``None``."""


M = TypeVar("M", bound=Member)

#: Called with a member and a delivery that does not go to its connection:
#: an intercepted event, or any broadcast for a member without a connection.
HandOver = Callable[[M, DispatchOut], None]
#: Called between blocks of a sweep: may ``extend`` the run with broadcasts on
#: its topic; returns False once the run must not grow any more.
Grow = Callable[["Run[M]"], bool]

_Send = Callable[[SharedFrames], None]
#: A connection member as dispatch uses it: key, member, its connection's send_shared.
_Target = tuple[Any, M, _Send]
#: What a member gets of a range: fastlane frames (None: none) and intercepted events.
_Payload = tuple[SharedFrames | None, list[DispatchOut]]


class _Group(Generic[M]):
    """A topic's connection members that receive the same frames."""

    __slots__ = ("intercepts", "members", "serializer")

    def __init__(self, serializer: Serializer | None, intercepts: frozenset[str]) -> None:
        self.serializer = serializer
        self.intercepts = intercepts
        self.members: dict[Any, _Target[M]] = {}


#: Members of one group that are consecutive in a block.
_Segment = tuple[_Group[M], list[_Target[M]]]


class _Topic(Generic[M]):
    """One topic's subscriptions, grouped the way dispatch uses them."""

    __slots__ = ("_blocks", "groups", "others", "subs")

    def __init__(self) -> None:
        self.subs: dict[Any, M] = {}
        self.groups: dict[tuple[int, frozenset[str]], _Group[M]] = {}
        self.others: dict[Any, M] = {}  # members without a connection
        self._blocks: tuple[list[list[_Segment[M]]], int] | None = None

    def add(self, member: M) -> None:
        self.remove(member.key)
        self.subs[member.key] = member
        connection = member.connection
        if connection is None:
            self.others[member.key] = member
            return
        self._blocks = None
        group_key = (id(member.serializer), member.intercepts)
        group = self.groups.get(group_key)
        if group is None:
            group = self.groups[group_key] = _Group(member.serializer, member.intercepts)
        group.members[member.key] = (member.key, member, connection.send_shared)

    def remove(self, key: Any) -> None:
        member = self.subs.pop(key, None)
        if member is None:
            return
        if member.connection is None:
            del self.others[key]
            return
        self._blocks = None
        group_key = (id(member.serializer), member.intercepts)
        group = self.groups[group_key]
        del group.members[key]
        if not group.members:
            del self.groups[group_key]

    def blocks(self) -> tuple[list[list[_Segment[M]]], int]:
        """The connection members in sweep order, in blocks of ``SWEEP_CHECK``; how many are full.

        Each block lists its members by group, so a sweep looks a payload up
        once per group in a block and then only calls ``send``. Built once
        per change of membership.
        """
        if self._blocks is None:
            targets = [
                (group, target)
                for group in self.groups.values()
                for target in group.members.values()
            ]
            blocks = [
                [
                    (group, [target for _, target in segment])
                    for group, segment in itertools.groupby(
                        targets[start : start + SWEEP_CHECK], key=itemgetter(0)
                    )
                ]
                for start in range(0, len(targets), SWEEP_CHECK)
            ]
            self._blocks = (blocks, len(targets) // SWEEP_CHECK)
        return self._blocks


class Run(Generic[M]):
    """Broadcasts on one topic being dispatched, and what each group gets of them."""

    __slots__ = ("_dispatches", "_encoded", "_excluded", "_hand_over", "_state", "topic")

    def __init__(
        self, state: _Topic[M], dispatches: list[Published], hand_over: HandOver[M]
    ) -> None:
        self._state = state
        self._hand_over = hand_over
        self._dispatches = dispatches
        self.topic = self._dispatches[0].broadcast.topic
        self._excluded = {m.from_key for m in self._dispatches if m.from_key is not None}
        self._encoded: dict[tuple[int, int], SharedFrame | None] = {}

    def __len__(self) -> int:
        return len(self._dispatches)

    def extend(self, dispatches: Iterable[Published]) -> None:
        """Add broadcasts on this topic; the members without a connection get them now."""
        start = len(self._dispatches)
        for message in dispatches:
            self._dispatches.append(message)
            if message.from_key is not None:
                self._excluded.add(message.from_key)
        self._to_others(start)

    def sweep(self, grow: Grow[M] | None) -> None:
        """Deliver the run to every member, growing it between blocks while ``grow`` allows."""
        self._to_others(0)
        blocks, full = self._state.blocks()
        dispatches = self._dispatches
        served = [0] * len(blocks)
        payloads: dict[tuple[_Group[M], int, int], _Payload] = {}
        growing = True
        behind = True
        while behind:
            behind = False
            for index, block in enumerate(blocks):
                start, end = served[index], len(dispatches)
                if start < end:
                    served[index] = end
                    for group, targets in block:
                        payload = payloads.get((group, start, end))
                        if payload is None:
                            payload = payloads[group, start, end] = self._payload(group, start, end)
                        self._deliver(group, targets, start, end, payload)
                if grow is not None and growing and index < full:
                    growing = grow(self)
                    if len(dispatches) > end:
                        behind = True  # the blocks before this point miss the new ones

    def gather(self, out: dict[_Send, list[SharedFrames]]) -> None:
        """Collect the run's frames per connection in ``out`` (a batch of several topics)."""
        self._to_others(0)
        end = len(self._dispatches)
        excluded = self._excluded
        hand_over = self._hand_over
        for group in self._state.groups.values():
            shared, outs = self._payload(group, 0, end)
            for key, member, send in group.members.values():
                mine, my_outs = (
                    self._payload(group, 0, end, key) if key in excluded else (shared, outs)
                )
                if mine is not None:
                    out.setdefault(send, []).append(mine)
                for dispatch_out in my_outs:
                    hand_over(member, dispatch_out)

    def _payload(self, group: _Group[M], start: int, end: int, key: Any = None) -> _Payload:
        """What a member of ``group`` gets of ``dispatches[start:end]``.

        ``key``: the member, when it is excluded by a ``broadcast_from``
        (``None``: any member that is not).
        """
        frames: list[SharedFrame] = []
        outs: list[DispatchOut] = []
        intercepts = group.intercepts
        for index in range(start, end):
            message = self._dispatches[index]
            if key is not None and message.from_key == key:
                continue
            if message.broadcast.event in intercepts:
                outs.append(DispatchOut(message.broadcast))
            else:
                frame = self._frame(index, group.serializer)
                if frame is not None:
                    frames.append(frame)
        return (SharedFrames(frames) if frames else None, outs)

    def _deliver(
        self, group: _Group[M], targets: list[_Target[M]], start: int, end: int, payload: _Payload
    ) -> None:
        """Hand ``payload`` (``dispatches[start:end]``) to each of ``targets``."""
        shared, outs = payload
        excluded = self._excluded
        if not outs and not excluded:
            # The fastlane's common case: one buffer, one send per member.
            if shared is not None:
                for _key, _member, send in targets:
                    try:
                        send(shared)
                    except Exception:
                        logger.exception("Writing broadcasts with %r failed", send)
            return
        hand_over = self._hand_over
        for key, member, send in targets:
            if key in excluded:
                mine, my_outs = self._payload(group, start, end, key)
            else:
                mine, my_outs = shared, outs
            if mine is not None:
                try:
                    send(mine)
                except Exception:
                    logger.exception("Writing broadcasts with %r failed", send)
            for dispatch_out in my_outs:
                hand_over(member, dispatch_out)

    def _to_others(self, start: int) -> None:
        """The members without a connection get ``dispatches[start:]``."""
        others = self._state.others
        if not others:
            return
        hand_over = self._hand_over
        for message in self._dispatches[start:]:
            dispatch_out = DispatchOut(message.broadcast)
            from_key = message.from_key
            for key, member in others.items():
                if from_key is None or key != from_key:
                    hand_over(member, dispatch_out)

    def _frame(self, index: int, serializer: Serializer | None) -> SharedFrame | None:
        """The fastlane frame of one broadcast for ``serializer``, encoded once."""
        cache_key = (index, id(serializer))
        try:
            return self._encoded[cache_key]
        except KeyError:
            pass
        assert serializer is not None
        broadcast = self._dispatches[index].broadcast
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
        self._encoded[cache_key] = frame
        return frame


class Subscriptions(Generic[M]):
    """Every topic's members, and the dispatch of a batch of broadcasts to them.

    Args:
        hand_over: how a member gets what does not go to its connection.
    """

    __slots__ = ("_by_key", "_hand_over", "_topics")

    def __init__(self, hand_over: HandOver[M]) -> None:
        self._hand_over = hand_over
        self._topics: dict[str, _Topic[M]] = {}
        self._by_key: dict[Any, set[str]] = {}  # member key -> its topics

    def subscribe(self, topic: str, member: M) -> None:
        """Add ``member`` to ``topic``, replacing the one with the same key."""
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        state.add(member)
        self._by_key.setdefault(member.key, set()).add(topic)

    def unsubscribe(self, topic: str, key: Any) -> None:
        """Remove the subscription of ``key`` from ``topic``."""
        topics = self._by_key.get(key)
        if topics is not None:
            topics.discard(topic)
            if not topics:
                del self._by_key[key]
        self._remove(topic, key)

    def unsubscribe_all(self, key: Any) -> None:
        """Remove every subscription of ``key``."""
        for topic in self._by_key.pop(key, ()):
            self._remove(topic, key)

    def counts(self) -> tuple[int, int]:
        """``(topics, subscriptions)``."""
        return (len(self._topics), sum(len(t.subs) for t in self._topics.values()))

    def dispatch(self, batch: Sequence[Published], grow: Grow[M] | None = None) -> None:
        """Deliver a batch of broadcasts, each to its topic's members, in order.

        The batch is cut into runs of one topic. A batch of one run (the usual
        case: one busy topic) is swept, growing through ``grow``; otherwise
        each connection's frames from every run are gathered and written with
        one ``send``, in the order published.
        """
        runs: list[list[Published]] = []
        topic = None
        for message in batch:
            if message.broadcast.topic != topic:
                topic = message.broadcast.topic
                runs.append([])
            runs[-1].append(message)
        if len(runs) == 1:
            state = self._topics.get(runs[0][0].broadcast.topic)
            if state is not None:
                Run(state, runs[0], self._hand_over).sweep(grow)
            return
        out: dict[_Send, list[SharedFrames]] = {}
        for run in runs:
            state = self._topics.get(run[0].broadcast.topic)
            if state is not None:
                Run(state, run, self._hand_over).gather(out)
        for send, parts in out.items():
            _send(send, parts[0] if len(parts) == 1 else SharedFrames.concat(parts))

    def _remove(self, topic: str, key: Any) -> None:
        state = self._topics.get(topic)
        if state is not None:
            state.remove(key)
            if not state.subs:
                del self._topics[topic]


def _send(send: _Send, shared: SharedFrames) -> None:
    try:
        send(shared)
    except Exception:
        logger.exception("Writing broadcasts with %r failed", send)
