"""The parent process of ``channels-actor serve``: keeps N workers alive, then drains them.

Theory of operation
-------------------
- **Start.** Each worker slot (numbered from 1) runs a fresh interpreter with
  one end of a socket pair, its *control socket*. The worker sends
  :data:`~.worker.READY` on it once it listens; until then it is *starting*.
- **Waiting.** The parent's one thread waits in a ``select`` on the control
  sockets and on :class:`SignalWakeup`, which turns SIGTERM, SIGINT and
  SIGCHLD into bytes; after every wake-up it reaps the workers that exited.
- **Restart.** A worker that exits is restarted in its slot: at once when it
  had served for :data:`STABLE_UPTIME`, otherwise after a back-off that
  doubles from :data:`FIRST_BACKOFF` to :data:`MAX_BACKOFF`, so a worker that
  crashes as it starts does not spin. A slot whose worker exits while still
  starting :data:`MAX_START_FAILURES` times in a row gives up: the other
  workers drain and :meth:`WorkerSupervisor.run` returns 1.
- **Drain.** SIGTERM or SIGINT is forwarded to every worker and restarts end.
  A worker still alive ``grace`` seconds later is killed (and logged); so is
  every worker at a second signal. ``run`` returns 0 when each worker ended on
  its own with status 0.

Each exit is logged with its status; a signal's name stands for the status
of a worker that a signal killed.
"""

from __future__ import annotations

import logging
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .signals import SignalWakeup
from .worker import READY

__all__ = [
    "FIRST_BACKOFF",
    "MAX_BACKOFF",
    "MAX_START_FAILURES",
    "STABLE_UPTIME",
    "WorkerCommand",
    "WorkerSupervisor",
]

logger = logging.getLogger("channels_actor.serving")

#: Seconds before restarting a worker that ended early the first time in a row.
FIRST_BACKOFF = 0.1
#: The longest wait before a restart.
MAX_BACKOFF = 10.0
#: Seconds a worker serves before its end no longer counts as early.
STABLE_UPTIME = 10.0
#: Starts in a row that end before serving, after which a slot gives up.
MAX_START_FAILURES = 5

#: ``command(index, control_fd)``: the argv that starts worker ``index``.
WorkerCommand = Callable[[int, int], list[str]]

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class _Worker:
    """One worker process, from its start to its reaping."""

    index: int
    process: subprocess.Popen[bytes]
    #: the parent's end of the control socket; None once the worker closed its end
    control: socket.socket | None
    started: float
    #: sent READY: it listens
    serving: bool = False

    def __str__(self) -> str:
        return f"Worker {self.index} (pid {self.process.pid})"


@dataclass
class _Slot:
    """A place for one worker, kept across its restarts."""

    index: int
    worker: _Worker | None = None
    #: workers in a row that ended early (while starting, or within STABLE_UPTIME)
    early_ends: int = 0
    #: when to start the next worker (monotonic), if one is due
    restart_at: float | None = None


def describe_status(returncode: int) -> str:
    """``exited with status 1``, ``killed by SIGKILL``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


class WorkerSupervisor:
    """Runs ``workers`` worker processes until SIGTERM or SIGINT, then drains them.

    Args:
        command: the argv of a worker, given its index and the file
            descriptor of its control socket (which it inherits).
        workers: how many run at once.
        grace: seconds a worker has to drain after the signal before it is killed.
    """

    def __init__(self, command: WorkerCommand, workers: int, *, grace: float) -> None:
        self._command = command
        self._slots = [_Slot(index) for index in range(1, workers + 1)]
        self._grace = grace
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()

    def run(self) -> int:
        """Start the workers and supervise them (main thread only); the exit status."""
        signals = (*_STOP_SIGNALS, signal.SIGCHLD)
        with SignalWakeup(signals) as wakeup, self._selector:
            self._selector.register(wakeup, selectors.EVENT_READ)
            try:
                for slot in self._slots:
                    self._spawn(slot)
                forward, status = self._supervise(wakeup)
                return self._drain(wakeup, forward, status)
            finally:
                self._kill(self._workers())  # an error in the parent leaves no worker behind

    # serving -----------------------------------------------------------------------

    def _supervise(self, wakeup: SignalWakeup) -> tuple[signal.Signals, int]:
        """Keep the workers running until a stop signal, or a slot gives up.

        Returns the signal to forward to the workers and the status so far.
        """
        while True:
            stops = self._wait(wakeup, self._until_restart())
            if stops:
                logger.info(
                    "%s: draining %d worker(s) (grace %.1fs)",
                    stops[0].name,
                    len(self._workers()),
                    self._grace,
                )
                return stops[0], 0
            for slot in self._slots:
                worker = slot.worker
                if worker is None or worker.process.poll() is None:
                    continue
                if self._ended(slot, worker):
                    return signal.SIGTERM, 1
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self._spawn(slot)

    def _wait(self, wakeup: SignalWakeup, timeout: float | None) -> list[signal.Signals]:
        """Wait up to ``timeout`` for a signal or a worker's message; the stop signals."""
        stops: list[signal.Signals] = []
        for key, _ in self._selector.select(timeout):
            if key.fileobj is wakeup:
                stops += [signum for signum in wakeup.received() if signum in _STOP_SIGNALS]
            else:
                self._read(key.data)
        return stops

    def _spawn(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        try:
            argv = self._command(slot.index, theirs.fileno())
            process = subprocess.Popen(argv, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = _Worker(slot.index, process, ours, time.monotonic())
        slot.worker, slot.restart_at = worker, None
        self._selector.register(ours, selectors.EVENT_READ, worker)
        logger.info("Started %s", worker)

    def _read(self, worker: _Worker) -> None:
        """Take what ``worker`` sent on its control socket (READY, or its end)."""
        control = worker.control
        while control is not None:
            try:
                data = control.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(worker)
                return
            if READY in data and not worker.serving:
                worker.serving = True
                logger.info("%s is serving", worker)

    def _ended(self, slot: _Slot, worker: _Worker) -> bool:
        """Log the end of ``slot``'s worker and plan its restart; True to give up."""
        self._read(worker)  # a READY it sent just before it died still counts
        self._close(worker)
        slot.worker = None
        status = describe_status(worker.process.wait())
        lived = time.monotonic() - worker.started
        early = not worker.serving or lived < STABLE_UPTIME
        slot.early_ends = slot.early_ends + 1 if early else 0
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (slot.early_ends - 1)) if early else 0.0
        if not worker.serving:
            if slot.early_ends >= MAX_START_FAILURES:
                logger.error(
                    "Worker %d failed to start %d times in a row (the last %s); giving up. "
                    "Its error is logged above.",
                    slot.index,
                    slot.early_ends,
                    status,
                )
                return True
            logger.warning("%s %s before serving; restarting it in %.1fs", worker, status, delay)
        else:
            logger.error(
                "%s %s after serving %.1fs; restarting it in %.1fs", worker, status, lived, delay
            )
        slot.restart_at = time.monotonic() + delay
        return False

    def _until_restart(self) -> float | None:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    # draining ----------------------------------------------------------------------

    def _drain(self, wakeup: SignalWakeup, forward: signal.Signals, status: int) -> int:
        """Forward ``forward`` to every worker and wait out the grace; the exit status."""
        for slot in self._slots:
            slot.restart_at = None
        draining = self._workers()
        for worker in draining:
            try:
                worker.process.send_signal(forward)
            except ProcessLookupError:
                pass  # it has just exited: reaped below
        began = time.monotonic()
        deadline = began + self._grace
        clean = status == 0
        while draining and time.monotonic() < deadline:
            if self._wait(wakeup, deadline - time.monotonic()):
                logger.warning("Second stop signal: killing the workers still draining")
                break
            for worker in [w for w in draining if w.process.poll() is not None]:
                draining.remove(worker)
                clean = self._stopped(worker, forward) and clean
        for worker in draining:
            logger.warning(
                "%s was still running %.1fs after %s; killing it",
                worker,
                time.monotonic() - began,
                forward.name,
            )
        if draining:
            self._kill(draining)
            clean = False
        return 0 if clean else 1

    def _stopped(self, worker: _Worker, forward: signal.Signals) -> bool:
        """Log how a draining worker ended; True if it ended well."""
        self._read(worker)
        self._close(worker)
        self._slots[worker.index - 1].worker = None
        code = worker.process.returncode
        # killed by the signal itself: it was starting and had nothing to drain
        if code in (0, -forward):
            logger.info("%s stopped", worker)
            return True
        logger.warning("%s %s while draining", worker, describe_status(code))
        return False

    # helpers -----------------------------------------------------------------------

    def _workers(self) -> list[_Worker]:
        return [slot.worker for slot in self._slots if slot.worker is not None]

    def _close(self, worker: _Worker) -> None:
        control, worker.control = worker.control, None
        if control is not None:
            self._selector.unregister(control)
            control.close()

    def _kill(self, workers: Iterable[_Worker]) -> None:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()
            self._close(worker)
            self._slots[worker.index - 1].worker = None
