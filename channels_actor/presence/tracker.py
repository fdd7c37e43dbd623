"""The tracker actor: the one owner of a Presence's state, and its diff window.

Theory of operation
-------------------
Every change and every read is a message to this actor, so the state
(:class:`~.state.PresenceState`, plain dicts) is only ever touched by its
thread and nothing takes a lock on the hot path. Changes are asked (the
caller needs the ``phx_ref``, or the ``AlreadyTracked`` error); reads are
asked too, so a channel that tracked and then lists sees its own entry.

Each change also goes to the :class:`~.diffs.DiffBuffer`. With
``broadcast_period`` 0 it is flushed at once, one diff per change as in
Phoenix; otherwise the first change of a window sets a timer (the process's
timer thread tells ``Flush``) and the flush then publishes one diff per
changed topic, however many changes the window held. Publishing is the
Presence's ``publish`` callback, a tell to its diff publisher (which runs the
slow part, ``fetch``), made here in order, so diffs of one topic leave in the
order they were made.

The tracker never asks another actor anything; channels' ends arrive as
``OwnerDown`` tells from the supervisor's thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Hashable, Mapping
from typing import Any, NamedTuple

import pykka

from .._pool import ServiceActor
from .._redact import preview
from .._timer import call_later
from ..errors import ChannelError
from .diffs import DiffBuffer, Publish
from .state import PresenceState

__all__ = [
    "Flush",
    "GetByKey",
    "List",
    "OwnerDown",
    "Track",
    "Tracker",
    "Untrack",
    "Update",
]

logger = logging.getLogger("channels_actor.presence")


class Track(NamedTuple):
    """Asked: add an entry; the answer is its ``phx_ref``."""

    owner: Hashable
    topic: str
    key: str
    meta: Mapping[str, Any]


class Untrack(NamedTuple):
    """Asked: remove an entry (nothing when it is not tracked)."""

    owner: Hashable
    topic: str
    key: str


class Update(NamedTuple):
    """Asked: replace an entry's meta (or a function of it); the answer is the new ``phx_ref``."""

    owner: Hashable
    topic: str
    key: str
    meta: Any


class OwnerDown(NamedTuple):
    """Told: the channel ``owner`` has ended; its entries leave."""

    owner: Hashable


class List(NamedTuple):
    """Asked: ``{key: {"metas": [...]}}`` of ``topic``."""

    topic: str


class GetByKey(NamedTuple):
    """Asked: the metas of ``key`` in ``topic``."""

    topic: str
    key: str


class Flush(NamedTuple):
    """Told by the timer: the window is over, publish the pending diffs."""


def _alive(owner: Hashable) -> bool:
    """False for an actor ref that has stopped; other owners are taken as alive."""
    is_alive = getattr(owner, "is_alive", None)
    return bool(is_alive()) if callable(is_alive) else True


class Tracker(ServiceActor):
    """Hosts a :class:`PresenceState` and a :class:`DiffBuffer`; see the module doc."""

    thread_name = "channels_actor-presence"

    def __init__(self, node: str, publish: Publish, broadcast_period: float) -> None:
        super().__init__()
        self._state = PresenceState(node)
        self._diffs = DiffBuffer()
        self._publish = publish
        self._period = broadcast_period
        self._timer_set = False

    def on_receive(self, message: Any) -> Any:
        state = self._state
        kind = type(message)
        if kind is Track:
            if not _alive(message.owner):
                msg = f"Cannot track {preview(message.key)}: its channel has ended"
                raise ChannelError(msg)
            entry = state.track(message.owner, message.topic, message.key, message.meta)
            self._changed(joined=(entry,))
            return entry.phx_ref
        if kind is List:
            return state.list(message.topic)
        if kind is Untrack:
            left = state.untrack(message.owner, message.topic, message.key)
            if left is not None:
                self._changed(left=(left,))
            return None
        if kind is Update:
            changed = state.update(message.owner, message.topic, message.key, message.meta)
            if changed is None:
                msg = (
                    f"Cannot update {preview(message.key)} in {preview(message.topic)}: "
                    "this channel does not track it; track() it first"
                )
                raise ChannelError(msg)
            old, new = changed
            self._changed(joined=(new,), left=(old,))
            return new.phx_ref
        if kind is OwnerDown:
            gone = state.untrack_owner(message.owner)
            if gone:
                self._changed(left=gone)
            return None
        if kind is GetByKey:
            return state.get_by_key(message.topic, message.key)
        if kind is Flush:
            self._timer_set = False
            self._flush()
            return None
        return super().on_receive(message)

    def _changed(self, joined: tuple[Any, ...] = (), left: Any = ()) -> None:
        self._diffs.add(joined, left)
        if not self._period:
            self._flush()
        elif not self._timer_set:
            self._timer_set = True
            ref = self.actor_ref
            call_later(self._period, lambda: _tell_flush(ref), ref)

    def _flush(self) -> None:
        for topic, joins, leaves in self._diffs.take():
            try:
                self._publish(topic, joins, leaves)
            except Exception:
                logger.exception("Publishing the presence_diff of %s failed", preview(topic))


def _tell_flush(ref: pykka.ActorRef[Any]) -> None:
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(Flush())
