"""pykka actors whose mailboxes a shared pool of worker threads drains.

Theory of operation
-------------------
pykka's ``ThreadingActor`` gives every actor its own OS thread. That caps a
process at the number of threads it may start, and makes a fan-out to a
thousand actors wake a thousand threads that convoy on the GIL. A
:class:`PooledActor` is a plain pykka ``Actor`` with a different inbox:
``put`` appends the envelope to the actor's own deque and, when the actor is
not already queued, puts the actor on the pool's run queue. A worker takes an
actor from the run queue and handles up to ``batch`` of its messages, one at a
time and in order, then queues it again if more are waiting. An actor is on
the run queue at most once, so no two workers ever run the same actor:
callbacks never run concurrently, as with a thread.

``ActorRef``, ``tell``, ``ask``, futures, ``on_start`` / ``on_stop`` /
``on_failure`` and the failure rules (a failing tell stops the actor, a failing
ask fails the caller's future) behave as in pykka. Pooled actors are not put in
pykka's global ``ActorRegistry``: its list is O(n) to unregister from and its
``stop_all`` is O(n^2); the owner (our supervisor) keeps its own map instead.

A callback that blocks holds one worker; the pool has ``size`` of them.

An inbox may be bounded (``max_mailbox``): a ``put`` that finds that many
messages waiting refuses the message and hands it to the actor's
``on_mailbox_full`` on the sender's thread, outside the lock, instead of
queueing it. The check is one ``len`` under the lock ``put`` takes anyway.
Message types in the actor's ``unbounded_messages`` (pykka's stop, the actor's
own control messages) are always queued, so a full actor can still be stopped.
:class:`BoundedInbox` is the same inbox for an actor with a thread of its own.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections import deque
from itertools import count
from typing import TYPE_CHECKING, Any, Self

import pykka
from pykka import ActorDeadError, ThreadingFuture, messages

from . import _writes

if TYPE_CHECKING:
    from pykka._envelope import Envelope

__all__ = ["ActorPool", "BoundedInbox", "PooledActor", "ServiceActor", "handle_envelope"]

logger = logging.getLogger(__name__)

_pool_counter = count(1)


class ActorPool:
    """A fixed set of worker threads that run :class:`PooledActor` mailboxes.

    Args:
        size: number of worker threads.
        batch: messages one actor may handle before yielding its worker.
        name: prefix of the worker thread names.
    """

    def __init__(self, size: int = 8, *, batch: int = 64, name: str = "ChannelPool") -> None:
        if size < 1:
            msg = f"ActorPool size must be at least 1, got {size!r}"
            raise ValueError(msg)
        self.size = size
        self.batch = batch
        self._ready: queue.SimpleQueue[_PoolInbox | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._name = f"{name}-{next(_pool_counter)}"
        self._stopped = False

    def start(self) -> Self:
        """Start the worker threads (idempotent)."""
        with self._lock:
            if self._threads or self._stopped:
                return self
            for index in range(self.size):
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return self

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called; a stopped pool does not start again."""
        return self._stopped

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the workers after the run queue empties (idempotent).

        Actors still alive are not stopped: stop them first.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            threads = list(self._threads)
        for _ in threads:
            self._ready.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _schedule(self, inbox: _PoolInbox) -> None:
        self._ready.put(inbox)

    def _work(self) -> None:
        ready = self._ready
        while True:
            inbox = ready.get()
            if inbox is None:
                return
            _writes.start()
            try:
                inbox.run(self.batch)  # flushes the batched writes itself
            finally:
                _writes.flush()  # in case run() raised

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _PoolInbox:
    """The mailbox of one pooled actor, and its place in the run queue.

    Implements pykka's inbox protocol (``put`` / ``get`` / ``empty``).
    """

    __slots__ = ("_actor", "_items", "_limit", "_lock", "_pool", "_scheduled", "_started")

    def __init__(self, actor: PooledActor, pool: ActorPool, limit: int | None = None) -> None:
        self._actor = actor
        self._pool = pool
        self._items: deque[Envelope[Any]] = deque()
        self._lock = threading.Lock()
        self._limit = sys.maxsize if limit is None else limit
        self._scheduled = True  # nothing runs until start()
        self._started = False

    def put(self, envelope: Envelope[Any], /) -> None:
        with self._lock:
            items = self._items
            if len(items) >= self._limit and not self._actor._always_queued(envelope):
                refused = True
            else:
                items.append(envelope)
                if self._scheduled:
                    return
                self._scheduled = True
                refused = False
        if refused:
            self._actor.on_mailbox_full(envelope)
        else:
            self._pool._schedule(self)

    def get(self) -> Envelope[Any]:
        with self._lock:
            return self._items.popleft()

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        """Messages waiting, as ``queue.Queue.qsize`` (flow control reads it)."""
        return len(self._items)

    def start(self) -> None:
        """Queue the actor for its first run, which calls ``on_start``."""
        self._pool._schedule(self)

    def run(self, batch: int) -> None:
        """Handle up to ``batch`` messages on the calling worker thread."""
        actor = self._actor
        stopped = actor.actor_stopped
        if not self._started:
            self._started = True
            actor._actor_loop_setup()
        items = self._items
        with self._lock:
            count = min(len(items), batch)
            taken = [items.popleft() for _ in range(count)]
        for index, envelope in enumerate(taken):
            if stopped.is_set():
                with self._lock:  # give the rest back, in order, for _drain
                    items.extendleft(reversed(taken[index:]))
                break
            handle_envelope(actor, envelope)
        # Write this batch's frames before another worker may take the actor:
        # its next batch must not overtake them.
        _writes.flush()
        if stopped.is_set():
            self._drain()
            return
        with self._lock:
            if not items:
                self._scheduled = False
                return
        self._pool._schedule(self)

    def _drain(self) -> None:
        """Answer the asks that came after the actor stopped, as pykka's teardown does."""
        actor = self._actor
        while True:
            with self._lock:
                if not self._items:
                    self._scheduled = False
                    return
                envelope = self._items.popleft()
            if envelope.reply_to is None:
                continue
            if isinstance(envelope.message, messages._ActorStop):
                envelope.reply_to.set(None)
            else:
                error = ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
                envelope.reply_to.set_exception(exc_info=(ActorDeadError, error, None))


_urns = count(1)
_flag_lock = threading.Lock()


class StopFlag:
    """A one-way ``threading.Event`` (``is_set`` / ``set`` / ``wait``) that costs a
    bare object until somebody waits on it: most actors are never waited for."""

    __slots__ = ("_cond", "_set")

    def __init__(self) -> None:
        self._set = False
        self._cond: threading.Condition | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with _flag_lock:
            self._set = True
            cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with _flag_lock:
            if self._set:
                return True
            if self._cond is None:
                self._cond = threading.Condition(threading.Lock())
            cond = self._cond
        with cond:
            return cond.wait_for(lambda: self._set, timeout)


class MailboxBound:
    """What a bounded inbox asks of its actor (mixed into pooled and threaded actors)."""

    unbounded_messages: frozenset[type] = frozenset({messages._ActorStop})
    """Message types queued even when the inbox is full (stops, control messages)."""
    _mailbox_limit: int | None = None
    """Messages the inbox may hold; None for no bound. Set before the inbox is made."""

    def _always_queued(self, envelope: Envelope[Any]) -> bool:
        return type(envelope.message) in self.unbounded_messages

    def on_mailbox_full(self, envelope: Envelope[Any]) -> None:
        """Called on the sender's thread with a message a full inbox refused.

        The default drops a tell and fails an ask with ``pykka.ActorDeadError``;
        subclasses may also count it, log it, or end the actor.
        """
        if envelope.reply_to is not None:
            error = ActorDeadError(f"{self} has a full mailbox; the message was dropped")
            envelope.reply_to.set_exception(exc_info=(ActorDeadError, error, None))


class BoundedInbox(queue.Queue[Any]):
    """pykka's ``ThreadingActor`` inbox (a ``queue.Queue``) with at most ``limit``
    messages waiting; see the module docstring. ``put`` never blocks."""

    def __init__(self, actor: MailboxBound, limit: int | None = None) -> None:
        super().__init__()
        self._actor = actor
        self._limit = sys.maxsize if limit is None else limit

    def put(self, item: Envelope[Any], block: bool = True, timeout: float | None = None) -> None:
        # queue.Queue.put, minus the wait for room: the same mutex, one len more.
        with self.mutex:
            if self._qsize() >= self._limit and not self._actor._always_queued(item):
                refused = True
            else:
                self._put(item)
                self.unfinished_tasks += 1
                self.not_empty.notify()
                refused = False
        if refused:
            self._actor.on_mailbox_full(item)


class PooledActor(MailboxBound, pykka.Actor):
    """A pykka actor run by an :class:`ActorPool` instead of a thread of its own.

    Subclasses take the pool as the first argument of ``start``::

        ref = MyActor.start(pool, other, args)

    Everything else is pykka's ``Actor``: ``on_receive``, ``on_start``,
    ``on_stop``, ``on_failure``, ``ActorRef.tell`` / ``ask`` / ``stop``.
    ``max_mailbox`` bounds the messages waiting (see :class:`MailboxBound`).
    """

    actor_inbox: _PoolInbox

    def __init__(
        self, pool: ActorPool, *args: Any, max_mailbox: int | None = None, **kwargs: Any
    ) -> None:
        # pykka's Actor.__init__ sets exactly these four fields; doing it here
        # skips a uuid4 (an os.urandom call) and a threading.Event per actor,
        # a noticeable share of a join's cost (benchmarks/README.md).
        self._actor_pool = pool
        self._mailbox_limit = max_mailbox
        self.actor_urn = f"urn:channels_actor:{next(_urns)}"
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = StopFlag()  # type: ignore[assignment]
        self._actor_ref = pykka.ActorRef(self)

    @classmethod
    def start(cls, *args: Any, **kwargs: Any) -> pykka.ActorRef[Self]:
        """Create the actor and queue its first run; it is not globally registered."""
        obj = cls(*args, **kwargs)
        obj._start_actor_loop()
        return obj.actor_ref

    def _create_actor_inbox(self) -> _PoolInbox:  # type: ignore[override]
        return _PoolInbox(self, self._actor_pool, self._mailbox_limit)

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return ThreadingFuture()

    def _start_actor_loop(self) -> None:
        self.actor_inbox.start()


def handle_envelope(actor: pykka.Actor, envelope: Envelope[Any]) -> None:
    """Handle one message on ``actor`` with pykka's rules for replies and failures.

    For actor loops other than pykka's own: the pool's, and the registry's
    batches (which take messages from the inbox themselves).
    """
    try:
        response = actor._handle_receive(envelope.message)
        if envelope.reply_to is not None:
            envelope.reply_to.set(response)
    except Exception:
        if envelope.reply_to is not None:
            logger.info("Exception returned from %s to caller:", actor, exc_info=True)
            envelope.reply_to.set_exception()
        else:
            actor._handle_failure(*sys.exc_info())
            try:
                actor.on_failure(*sys.exc_info())
            except Exception:
                actor._handle_failure(*sys.exc_info())
    except BaseException:
        # pykka stops every actor in the process here; a pool worker must
        # survive, so only this actor stops.
        logger.exception("%s stopped by %s", actor, type(sys.exc_info()[1]).__name__)
        actor._handle_failure(*sys.exc_info())


class ServiceActor(pykka.ThreadingActor):
    """A long-lived actor with a thread of its own (the registry, the supervisor).

    Its inbox is a ``queue.SimpleQueue`` (C, no condition variable: cheaper to
    ``tell`` than pykka's ``queue.Queue``), and its thread is
    named and a daemon, like every thread of the library (endpoints still
    running at exit are drained by an ``atexit`` hook instead).
    """

    thread_name = "channels_actor-service"

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue[Any]:
        return queue.SimpleQueue()

    def _start_actor_loop(self) -> None:
        threading.Thread(target=self._actor_loop, name=self.thread_name, daemon=True).start()
