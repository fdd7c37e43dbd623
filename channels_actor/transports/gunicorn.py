"""Inside a gunicorn worker: say which deployments cannot work, and drain when the worker stops.

Theory of operation
-------------------
gunicorn runs ``Endpoint.wsgi_app`` on its worker's request threads, and an
open WebSocket keeps its thread until it closes (``transports/wsgi.py``).
gunicorn cannot know what follows from that, so this module tells it:

- A stopping worker waits for its open requests, up to ``--graceful-timeout``,
  and is then killed. A WebSocket never ends by itself, so every SIGTERM ran
  into the kill: clients saw 1006 and no channel's ``terminate`` ran. Here the
  endpoint is drained as soon as the worker begins to stop: clients get 1012,
  every ``terminate`` runs, the request threads return and the worker exits as
  soon as its other requests are done, well inside the grace period.
- ``-k gthread`` with its default ``--threads 1`` gives the first WebSocket
  the only thread, and the sync worker has only one: :func:`warnings_for`
  says so, with the fix, once per endpoint and worker.
- ``-w N`` runs N processes, and the embedded PubSub reaches only its own.

Finding the worker. gunicorn gives the app no handle on its worker, but every
worker installs its own bound method as the SIGTERM handler before it serves
a request, and ``signal.getsignal`` reads it from any thread
(:func:`current_worker`). Its ``cfg`` is gunicorn's configuration: the worker
count, threads and graceful timeout as the command line set them.

Noticing the stop. Every way a gunicorn worker stops (SIGTERM; SIGINT and
SIGQUIT; ``max_requests``; the reloader; an arbiter that died) starts with
``worker.alive = False``. One daemon thread per worker (:class:`WorkerExit`)
reads that flag a few times a second and, once it is False, drains each
endpoint embedded in the worker on a thread of its own, which the interpreter
waits for before it exits. Chaining the worker's signal handlers instead
would react at once, but ``signal.signal`` works only on the main thread,
and the app is often built elsewhere: ``--preload`` builds it in the arbiter,
whose forked workers then reset every handler; an app factory may build it
on a request thread. Reading the flag replaces nothing of gunicorn's, works
from any thread, for every worker class and every reason to stop, and costs
a wakeup every :data:`POLL_INTERVAL` seconds.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import weakref
from typing import Any, Protocol

__all__ = [
    "POLL_INTERVAL",
    "Embedded",
    "Worker",
    "WorkerExit",
    "current_worker",
    "embed",
    "serving_worker",
    "warnings_for",
    "watcher",
    "worker_kind",
]

logger = logging.getLogger("channels_actor.gunicorn")

#: How often the watcher reads ``worker.alive`` (seconds).
POLL_INTERVAL = 0.2


class WorkerConfig(Protocol):
    """The part of gunicorn's ``Config`` read here."""

    @property
    def workers(self) -> int: ...

    @property
    def threads(self) -> int: ...

    @property
    def graceful_timeout(self) -> float: ...


class Worker(Protocol):
    """A gunicorn worker (``gunicorn.workers.base.Worker``), as read here."""

    @property
    def alive(self) -> bool:
        """False from the moment the worker begins to stop."""
        ...

    @property
    def cfg(self) -> WorkerConfig: ...


class _PubSub(Protocol):
    @property
    def single_node(self) -> bool: ...


class _Config(Protocol):
    @property
    def stop_timeout(self) -> float: ...


class Embedded(Protocol):
    """The endpoint, as seen from the worker it is embedded in."""

    @property
    def config(self) -> _Config: ...

    @property
    def pubsub(self) -> _PubSub: ...

    def stop(self, timeout: float | None = None) -> None:
        """Drain: terminate every channel, close every socket with 1012."""
        ...


def current_worker() -> Worker | None:
    """The gunicorn worker this process is, from its SIGTERM handler; None elsewhere.

    Safe from any thread. None in gunicorn's arbiter, outside gunicorn, and
    when something else has replaced the worker's handler.
    """
    base = sys.modules.get("gunicorn.workers.base")
    if base is None:  # gunicorn never ran in this process
        return None
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    if isinstance(owner, base.Worker):
        worker: Worker = owner
        return worker
    return None


def worker_kind(worker: object) -> str:
    """``"gthread"``, ``"sync"`` or the class name, from the worker's class or its bases."""
    for cls in type(worker).__mro__:
        module = cls.__module__
        if module in ("gunicorn.workers.gthread", "gunicorn.workers.sync"):
            return module.rsplit(".", 1)[1]
    return type(worker).__name__


def warnings_for(kind: str, threads: int, workers: int, single_node: bool) -> list[str]:
    """What cannot work in this deployment, each with its fix (pure)."""
    found = []
    if kind == "sync":
        found.append(
            "WebSockets cannot work under gunicorn's sync worker: it serves one request at "
            "a time, and a WebSocket is a request that lasts until it closes, so the first "
            "one stops this worker from answering anything else (and gunicorn kills it after "
            "--timeout). Run gunicorn with -k gthread --threads N, N = one thread per "
            "WebSocket a worker holds at once plus the HTTP requests it serves meanwhile."
        )
    elif kind == "gthread" and threads <= 1:
        found.append(
            "gunicorn's gthread worker runs with --threads 1: each open WebSocket holds a "
            "thread until it closes, so the first one stops this worker from answering "
            "anything else. Run gunicorn with --threads N, N = one thread per WebSocket a "
            "worker holds at once plus the HTTP requests it serves meanwhile (for up to 90 "
            "sockets and 10 requests at a time per worker: --threads 100)."
        )
    if workers > 1 and single_node:
        found.append(
            f"gunicorn runs {workers} workers (-w {workers}) and this endpoint's PubSub is "
            "the embedded one: a broadcast reaches only the clients of the worker it was "
            "published in, never those of the others. Give every worker the same cluster "
            "PubSub, Endpoint(pubsub=RedisPubSub('redis://127.0.0.1:6379/0')), or run -w 1."
        )
    return found


class WorkerExit:
    """Drains the endpoints embedded in one gunicorn worker once it begins to stop.

    Its watcher thread (a daemon: it must not keep a worker alive) ends after
    the drain has started, or with :meth:`close`.
    """

    def __init__(self, worker: Worker, interval: float = POLL_INTERVAL) -> None:
        self.worker = worker
        self._interval = interval
        self._endpoints: weakref.WeakSet[Embedded] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="channels_actor-gunicorn", daemon=True
        )
        #: The drain threads started, once the worker began to stop.
        self.drains: list[threading.Thread] = []

    def add(self, endpoint: Embedded) -> None:
        """Drain ``endpoint`` too; starts the watcher on first use."""
        with self._lock:
            self._endpoints.add(endpoint)
            if self._thread.ident is None and not self._closed.is_set():  # never started
                self._thread.start()

    def close(self) -> None:
        """Stop watching (the drains already started go on)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()

    def join(self, timeout: float) -> bool:
        """Wait for the watcher to end and its drains to finish; whether they did."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        for drain in self.drains:
            drain.join(timeout)
        return not self._thread.is_alive() and not any(d.is_alive() for d in self.drains)

    def _watch(self) -> None:
        while self.worker.alive:
            if self._closed.wait(self._interval):
                return
        grace = float(self.worker.cfg.graceful_timeout)
        with self._lock:
            endpoints = list(self._endpoints)
        logger.info("gunicorn worker stopping: draining %d endpoint(s)", len(endpoints))
        for endpoint in endpoints:
            # the drain waits twice (channels, then sockets); the arbiter kills
            # the worker once the grace is over
            timeout = min(endpoint.config.stop_timeout, grace / 3)
            drain = threading.Thread(
                target=_drain, args=(endpoint, timeout), name="channels_actor-drain"
            )
            drain.start()  # not a daemon: the interpreter waits for it before exiting
            self.drains.append(drain)


def _drain(endpoint: Embedded, timeout: float) -> None:
    try:
        endpoint.stop(timeout)
    except Exception:
        logger.exception("Draining %r as its gunicorn worker stops failed", endpoint)


_lock = threading.Lock()
_embedded: weakref.WeakSet[Any] = weakref.WeakSet()  # endpoints seen in this worker
_exit: WorkerExit | None = None  # this worker's watcher


_unfound = threading.Event()  # said that gunicorn's worker could not be found


def serving_worker(environ: dict[str, Any]) -> Worker | None:
    """The gunicorn worker serving this request; None outside gunicorn.

    Under gunicorn with the worker's SIGTERM handler replaced, says once that
    open WebSockets will not be drained when the worker stops.
    """
    if "gunicorn.socket" not in environ:
        return None
    worker = current_worker()
    if worker is None and not _unfound.is_set():
        _unfound.set()
        logger.warning(
            "Serving under gunicorn, but its worker is not the SIGTERM handler (%r): open "
            "WebSockets will not be drained when the worker stops; call endpoint.stop() "
            "from the handler that replaced it",
            signal.getsignal(signal.SIGTERM),
        )
    return worker


def watcher() -> WorkerExit | None:
    """This worker's :class:`WorkerExit` (None before an endpoint was embedded)."""
    return _exit


def embed(endpoint: Embedded, worker: Worker) -> None:
    """Once per endpoint and worker: say what cannot work, and drain on the worker's exit.

    The warnings come from the first worker gunicorn started only (its
    ``age`` is 1): every worker has the same configuration, and ``-w 8``
    should not say it eight times.
    """
    global _exit
    with _lock:
        if _exit is None or _exit.worker is not worker:
            _exit = WorkerExit(worker)  # after a fork, the worker is new
            _embedded.clear()
        if endpoint in _embedded:
            return
        _embedded.add(endpoint)
        watcher = _exit
    if getattr(worker, "age", 1) == 1:
        cfg = worker.cfg
        single_node = endpoint.pubsub.single_node
        for text in warnings_for(worker_kind(worker), cfg.threads, cfg.workers, single_node):
            logger.warning(text)
    watcher.add(endpoint)
