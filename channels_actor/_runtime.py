"""The actors behind an endpoint: the worker pool, the PubSub registry, the supervisor.

``actor_mode`` is the one switch between the two ways channel actors run:

- ``"pool"`` (default): each channel is a :class:`PooledChannelActor` whose
  mailbox a fixed pool of ``pool_size`` worker threads drains. Threads stay
  constant however many channels are joined; a fan-out to 1,000 channels wakes
  at most ``pool_size`` threads.
- ``"thread"``: each channel is a pykka ``ThreadingActor`` with a thread of its
  own, as pykka is usually used. Simple, but a process tops out at its thread
  limit and fan-outs convoy on the GIL (see ``benchmarks/bench_scheduling.py``).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pykka

from ._channel_server import ChannelServer, PooledChannelActor, ThreadedChannelActor
from ._messages import (
    ChannelExited,
    ChannelHandle,
    DrainChannels,
    JoinChannel,
    NoChannel,
    ShutdownSignal,
    WatchChannel,
)
from ._pool import ActorPool
from ._timer import discard_stopped
from .errors import ConfigurationError
from .supervisor import ChildCount, Children, Supervisor

if TYPE_CHECKING:
    from ._stats import Counters
    from ._types import RuntimeService
    from .channel import Channel
    from .pubsub import PubSub
    from .socket import Socket

__all__ = ["ACTOR_MODES", "Runtime"]

logger = logging.getLogger("channels_actor.runtime")

ACTOR_MODES = ("pool", "thread")


class Runtime:
    """Starts and stops the actors of one endpoint, in order."""

    def __init__(self, pubsub: PubSub, *, actor_mode: str = "pool", pool_size: int = 8) -> None:
        if actor_mode not in ACTOR_MODES:
            msg = f"actor_mode must be one of {ACTOR_MODES}, got {actor_mode!r}"
            raise ConfigurationError(msg)
        self.actor_mode = actor_mode
        self.pubsub = pubsub
        self.pool = ActorPool(pool_size) if actor_mode == "pool" else None
        self.supervisor: pykka.ActorRef[Supervisor]
        self.children = Children()
        #: Attached services (``Endpoint.attach``): told of each channel's end, stopped last.
        self.services: list[RuntimeService] = []
        self._lock = threading.Lock()
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start the pool, the PubSub registry and the supervisor (idempotent)."""
        with self._lock:
            if self._running:
                return
            if self.pool is not None:
                if self.pool.stopped:
                    self.pool = ActorPool(self.pool.size, batch=self.pool.batch)
                self.pool.start()
            self.pubsub.start()
            self.children = Children()
            self.supervisor = Supervisor.start(self.children, self.services)
            self._running = True

    def start_channel(
        self,
        channel_cls: type[Channel],
        socket: Socket,
        join: tuple[str, str | None],
        first: JoinChannel,
        *,
        name: str,
        max_mailbox: int | None = None,
        counters: Counters | None = None,
    ) -> ChannelHandle:
        """Start the actor of a join ``(topic, join_ref)`` on the connection ``socket``.

        It is watched by the supervisor before it runs, and ``first`` (the
        join's payload and ref) is its first message. ``name`` (class and
        topic preview) is for log lines; ``max_mailbox`` bounds its mailbox;
        drops are counted in ``counters``.

        Raises:
            RuntimeError: no thread could be started for it; the supervisor
                has already been told that it ended.
        """
        actor: PooledChannelActor | ThreadedChannelActor
        if self.pool is not None:
            actor = PooledChannelActor(self.pool, max_mailbox=max_mailbox)
        else:
            actor = ThreadedChannelActor(max_mailbox=max_mailbox, thread_name=join[0])
        ref = actor.actor_ref
        handle = ChannelHandle(ref, ShutdownSignal())
        supervisor = self.supervisor
        actor.server = ChannelServer(
            actor,
            channel_cls,
            socket,
            join,
            signal=handle.signal,
            exited=supervisor.tell,
            counters=counters,
            mailbox_limit=max_mailbox,
        )
        # Watched before it runs, so its ChannelExited always finds it watched.
        self.children.add(WatchChannel(handle, name))
        ref.tell(first)
        try:
            actor.begin()
        except RuntimeError as exc:  # "can't start new thread": the process is at its limit
            supervisor.tell(ChannelExited(ref, ("error", exc), NoChannel(), socket))
            raise
        return handle

    def channel_count(self, timeout: float = 5.0) -> int:
        """Channel actors alive, as the supervisor counts them."""
        count: int = self.supervisor.ask(ChildCount(), block=True, timeout=timeout)
        return count

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate every channel with ``("shutdown", "closed")``, then stop the actors."""
        with self._lock:
            if not self._running:
                return
            self._running = False
        done = threading.Event()
        self.supervisor.tell(DrainChannels(("shutdown", "closed"), done))
        if not done.wait(timeout):
            logger.warning(
                "Some channels did not terminate within %.1fs of Endpoint.stop()", timeout
            )
        try:
            self.supervisor.stop(block=True, timeout=timeout)
        except pykka.Timeout:
            logger.warning("The supervisor did not stop within %.1fs", timeout)
        for service in self.services:
            try:
                service.stop(timeout)
            except Exception:
                logger.exception("Stopping %r failed", service)
        self.pubsub.stop(timeout)
        if self.pool is not None:
            self.pool.stop(timeout)
        discard_stopped()  # send_after timers aimed at the channels just stopped
