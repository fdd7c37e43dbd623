"""Presence: who is in each topic, kept live on every client (Phoenix.Presence).

Bind one to an endpoint and track channels from their callbacks::

    presence = Presence(endpoint)

    class RoomChannel(Channel):
        def join(self, topic, payload, socket):
            socket.channel_ref.tell("after_join")
            return ("ok", socket)

        def handle_info(self, message, socket):
            push(socket, "presence_state", presence.list(socket))
            presence.track(socket, socket.assigns["user_id"], {"online_at": time.time()})
            return ("noreply", socket)

Every change reaches the topic's subscribers on this node as a
``presence_diff`` ``{"joins": {...}, "leaves": {...}}`` through the fastlane,
which phoenix.js's ``Presence`` applies. Changes within ``broadcast_period``
are sent as one diff per topic. A channel that ends, for any reason, leaves.

The state has one owner, the tracker actor (:mod:`.tracker`), over a plain
state (:mod:`.state`, whose doc also says how replication across nodes comes
next) and a diff window (:mod:`.diffs`); a second actor (:mod:`.publisher`)
runs ``fetch`` on each diff and broadcasts it, so a slow ``fetch`` holds up
no track.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

import pykka

from ..errors import ChannelError, ChannelTimeout, ConfigurationError
from ..serializers.base import encode_payload
from ..socket import Socket
from .diffs import Presences, Publish
from .publisher import Diff, DiffPublisher
from .state import AlreadyTracked
from .tracker import GetByKey, List, OwnerDown, Track, Tracker, Untrack, Update

if TYPE_CHECKING:
    from ..endpoint import Endpoint

__all__ = ["AlreadyTracked", "Presence", "Presences"]

logger = logging.getLogger("channels_actor.presence")

Meta = Mapping[str, Any]


class Presence:
    """Tracks presences in an endpoint's topics; subclass to override :meth:`fetch`.

    Args:
        endpoint: the endpoint whose channels are tracked; the Presence attaches
            itself, so channels that end leave and it stops with the endpoint.
        broadcast_period: seconds over which a topic's changes are gathered
            into one ``presence_diff`` (0: one diff per change, as Phoenix).
        timeout: seconds a call waits for the tracker before ``ChannelTimeout``.

    Every method may be called from any thread; calls from one thread are
    applied in order.
    """

    def __init__(
        self, endpoint: Endpoint, *, broadcast_period: float = 0.02, timeout: float = 5.0
    ) -> None:
        if not isinstance(broadcast_period, int | float) or broadcast_period < 0:
            msg = f"broadcast_period is seconds, 0 or more; got {broadcast_period!r}"
            raise ConfigurationError(msg)
        self.endpoint = endpoint
        self.broadcast_period = float(broadcast_period)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._tracker: pykka.ActorRef[Tracker] | None = None
        self._publisher: pykka.ActorRef[DiffPublisher] | None = None
        endpoint.attach(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} broadcast_period={self.broadcast_period}>"

    # changes ------------------------------------------------------------------

    def track(self, owner: Socket | Any, *args: Any) -> str:
        """Track: ``track(socket, key, meta)`` or ``track(channel_ref, topic, key, meta)``.

        Returns the meta's new ``phx_ref``.

        Raises:
            AlreadyTracked: this channel already tracks ``key`` in the topic.
            ChannelError: the meta is not a JSON mapping, or the channel has ended.
        """
        ref, (topic, key, meta) = _target(owner, args, 2, "track", "key, meta")
        _check_meta(meta)
        phx_ref: str = self._ask(Track(ref, topic, key, meta))
        return phx_ref

    def untrack(self, owner: Socket | Any, *args: Any) -> None:
        """Stop tracking: ``untrack(socket, key)`` or ``untrack(channel_ref, topic, key)``."""
        ref, (topic, key) = _target(owner, args, 1, "untrack", "key")
        self._ask(Untrack(ref, topic, key))

    def update(self, owner: Socket | Any, *args: Any) -> str:
        """Replace: ``update(socket, key, meta)`` or ``update(channel_ref, topic, key, meta)``.

        ``meta`` may be a function of the current meta. The new meta gets a new
        ``phx_ref`` (returned) and ``phx_ref_prev``; clients see a leave of the
        old meta and a join of the new one.

        Raises:
            ChannelError: the key is not tracked by this channel, or the meta
                is not a JSON mapping.
        """
        ref, (topic, key, meta) = _target(owner, args, 2, "update", "key, meta")
        if not callable(meta):
            _check_meta(meta)
        phx_ref: str = self._ask(Update(ref, topic, key, _checked_update(meta)))
        return phx_ref

    # reads --------------------------------------------------------------------

    def list(self, topic: str | Socket) -> Presences:
        """``{key: {"metas": [meta, ...]}}`` of a topic (or a socket's), through :meth:`fetch`."""
        name = _topic_of(topic)
        presences: Presences = self._ask(List(name))
        return self.fetch(name, presences)

    def get_by_key(self, topic: str | Socket, key: str) -> dict[str, Any]:
        """``{"metas": [...]}`` of ``key`` in the topic, through :meth:`fetch`; ``{}`` if absent."""
        name = _topic_of(topic)
        metas: list[Meta] = self._ask(GetByKey(name, _key(key)))
        if not metas:
            return {}
        return self.fetch(name, {_key(key): {"metas": metas}}).get(_key(key), {})

    def fetch(self, topic: str, presences: Presences) -> Presences:
        """Override to add data to the presences about to be listed or sent.

        Called with ``{key: {"metas": [...]}}`` for every ``list`` and for each
        side of every diff, once per diff, on the caller's or the tracker's
        thread; return the same shape, with extra fields beside ``metas``
        (one bulk query for the keys, not one per key). The default returns
        ``presences`` unchanged.
        """
        return presences

    # runtime ------------------------------------------------------------------

    def channel_exited(self, ref: Any) -> None:
        """The endpoint's supervisor says channel ``ref`` ended: its presences leave."""
        tracker = self._tracker
        if tracker is not None:
            try:
                tracker.tell(OwnerDown(ref))
            except pykka.ActorDeadError:
                pass  # stopped meanwhile: nothing to leave

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the tracker, then the publisher after the diffs it was told
        (the endpoint does, when it stops); the state is dropped."""
        with self._lock:
            tracker, self._tracker = self._tracker, None
            publisher, self._publisher = self._publisher, None
        for actor in (tracker, publisher):
            if actor is not None and actor.is_alive():
                try:
                    actor.stop(block=True, timeout=timeout)
                except pykka.Timeout:
                    logger.warning("%s did not stop within %.1fs", actor, timeout)

    def _ref(self) -> pykka.ActorRef[Tracker]:
        tracker = self._tracker
        if tracker is not None and tracker.is_alive():
            return tracker  # no lock on the hot path
        with self._lock:
            tracker = self._tracker
            if tracker is None or not tracker.is_alive():
                self.endpoint.start_runtime()
                node = self.endpoint.pubsub.node_name
                publisher = self._publisher
                if publisher is None or not publisher.is_alive():
                    publisher = self._publisher = DiffPublisher.start(self._send_diff)
                tracker = Tracker.start(node, _teller(publisher), self.broadcast_period)
                self._tracker = tracker
            return tracker

    def _ask(self, message: Any) -> Any:
        try:
            return self._ref().ask(message, block=True, timeout=self.timeout)
        except pykka.Timeout:
            msg = f"The presence tracker did not answer within {self.timeout}s"
            raise ChannelTimeout(msg) from None
        except pykka.ActorDeadError:
            msg = "The presence tracker has stopped (the endpoint is stopping)"
            raise ChannelError(msg) from None

    def _send_diff(self, topic: str, joins: Presences, leaves: Presences) -> None:
        """Send one ``presence_diff`` to this node's subscribers (the publisher's thread)."""
        diff = {
            "joins": self.fetch(topic, joins) if joins else {},
            "leaves": self.fetch(topic, leaves) if leaves else {},
        }
        self.endpoint.pubsub.local_broadcast(topic, "presence_diff", diff)


def _teller(publisher: pykka.ActorRef[DiffPublisher]) -> Publish:
    """The tracker's ``publish``: a tell to the publisher, so the tracker never waits."""

    def publish(topic: str, joins: Presences, leaves: Presences) -> None:
        try:
            publisher.tell(Diff(topic, joins, leaves))
        except pykka.ActorDeadError:
            logger.debug("presence_diff of %.80r dropped: the Presence has stopped", topic)

    return publish


def _target(
    owner: Any, args: tuple[Any, ...], count: int, name: str, rest: str
) -> tuple[Hashable, tuple[Any, ...]]:
    """``(channel_ref, (topic, key, ...))`` from either calling form."""
    if isinstance(owner, Socket):
        if len(args) != count:
            msg = f"{name}(socket, {rest}) takes {count + 1} arguments"
            raise TypeError(msg)
        if owner.channel_ref is None or owner.topic is None:
            msg = f"{name}() needs a channel's socket (one given to join or a callback)"
            raise ChannelError(msg)
        ref: Hashable = owner.channel_ref
        topic: str = owner.topic
        values = args
    else:
        if len(args) != count + 1:
            msg = f"{name}(channel_ref, topic, {rest}) takes {count + 2} arguments"
            raise TypeError(msg)
        ref, topic, *others = (owner, *args)
        values = tuple(others)
        if not isinstance(topic, str):
            msg = f"{name}() needs a str topic, got {type(topic).__name__}"
            raise ChannelError(msg)
    return ref, (topic, _key(values[0]), *values[1:])


def _key(key: Any) -> str:
    """Keys are strings on the wire; ints are taken as Phoenix does, as their text."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    msg = f"A presence key is a str (or int), got {type(key).__name__}"
    raise ChannelError(msg)


def _topic_of(topic: str | Socket) -> str:
    if isinstance(topic, Socket):
        if topic.topic is None:
            msg = "list() needs a channel's socket or a topic"
            raise ChannelError(msg)
        return topic.topic
    if not isinstance(topic, str):
        msg = f"A topic is a str, got {type(topic).__name__}"
        raise ChannelError(msg)
    return topic


def _check_meta(meta: Any) -> None:
    """A meta is a JSON mapping: refused here, on the caller's thread, before it is stored."""
    if not isinstance(meta, Mapping):
        msg = f"A presence meta is a mapping, got {type(meta).__name__}"
        raise ChannelError(msg)
    try:
        encode_payload(meta)
    except TypeError as exc:
        msg = f"A presence meta must be JSON-serializable: {exc}"
        raise ChannelError(msg) from None


def _checked_update(meta: Any) -> Any:
    """A function meta is checked when the tracker runs it, against the current meta."""
    if not callable(meta):
        return meta
    func: Callable[[Meta], Meta] = meta

    def checked(old: Meta) -> Meta:
        new = func(old)
        _check_meta(new)
        return new

    return checked
