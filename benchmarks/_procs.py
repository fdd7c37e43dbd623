"""Child processes that speak JSON lines: the servers under test and the load generator.

Every child started here is remembered until it is stopped, and
:func:`kill_all` (called from ``finally`` blocks and at exit) kills whatever
is left, so an error or Ctrl-C in the benchmark leaves no process behind.
Children also exit on their own when their stdin closes; the redis-server of the
cluster scenarios (:class:`RedisProcess`) and ``channels-actor serve``
(:class:`ServeProcess`) are stopped by the same means.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self

from benchmarks import _pidstats
from benchmarks._util import PROJECT_ROOT

__all__ = [
    "ChildError",
    "JsonChild",
    "LoadgenProcess",
    "RedisProcess",
    "ServeProcess",
    "ServerProcess",
    "kill_all",
]


class _Child(Protocol):
    def stop(self, quit_line: str | None, timeout: float = 3.0) -> None: ...
    def close_files(self) -> None: ...


_children: set[_Child] = set()
_children_lock = threading.Lock()


def _spawn(child: _Child, args: list[str], **options: Any) -> subprocess.Popen[str]:
    """Start ``args`` (stdout read as text lines); remember ``child`` for :func:`kill_all`."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, bufsize=1, **options)
    with _children_lock:
        _children.add(child)
    return proc


class ChildError(RuntimeError):
    """A child died, timed out or answered with an error."""


class JsonChild:
    """``python -m <module> <args>`` with JSON lines on stdin/stdout; stderr kept in a file."""

    def __init__(self, module: str, args: list[str], name: str) -> None:
        self.name = name
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed in close_files)
        self.proc = _spawn(
            self,
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON line from the child, within ``timeout`` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            msg = f"{self.name}: no answer within {timeout:.0f}s"
            raise ChildError(msg) from None
        if line is None:
            self.proc.wait(5)
            msg = f"{self.name} exited (code {self.proc.returncode}): {self.stderr_tail()}"
            raise ChildError(msg)
        try:
            return dict(json.loads(line))
        except ValueError:
            msg = f"{self.name} wrote {line[:200]!r}"
            raise ChildError(msg) from None

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            msg = f"{self.name} is gone: {self.stderr_tail()}"
            raise ChildError(msg) from None

    def stderr_tail(self, lines: int = 12) -> str:
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, quit_line: str | None, timeout: float = 3.0) -> None:
        """Ask politely (``quit_line``), then kill; always reaps the process."""
        if self.proc.poll() is None and quit_line is not None:
            with contextlib.suppress(ChildError, OSError, ValueError):
                self.write(quit_line)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        with _children_lock:
            _children.discard(self)

    def close_files(self) -> None:
        with contextlib.suppress(OSError):
            self._stderr.close()


class ServerProcess(JsonChild):
    """A server under test (``benchmarks.servers``); ``stats()`` reads its CPU time and RSS."""

    def __init__(
        self,
        kind: str,
        options: list[str] | None = None,
        timeout: float = 60,
        extra_args: Sequence[str] = (),
    ) -> None:
        args = [kind, "--port", "0", *extra_args]
        for option in options or []:
            args += ["--option", option]
        super().__init__("benchmarks.servers", args, f"server {kind}")
        self.kind = kind
        try:
            self.hello = self.read(timeout)
        except ChildError:
            self.stop(None)
            raise
        self.port = int(self.hello["port"])

    def stats(self, timeout: float = 30) -> dict[str, Any]:
        self.write("stats")
        return self.read(timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop("quit")
        self.close_files()


class LoadgenProcess(JsonChild):
    """The load generator (``benchmarks.loadgen``): one command at a time."""

    def __init__(self, timeout: float = 30) -> None:
        super().__init__("benchmarks.loadgen", [], "loadgen")
        try:
            self.hello = self.read(timeout)
        except ChildError:
            self.stop(None)
            raise

    def command(
        self,
        op: str,
        wait_s: float,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """Run ``op`` and return its result; marks it prints go to ``on_event`` meanwhile."""
        self.write(json.dumps({"op": op, **spec}))
        deadline = time.monotonic() + wait_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = f"loadgen {op}: no result within {wait_s:.0f}s"
                raise ChildError(msg)
            line = self.read(remaining)
            if "event" in line:
                if on_event is not None:
                    on_event(line)
                continue
            result = line.get("result")
            if not isinstance(result, dict):
                msg = f"loadgen {op}: unexpected line {line!r}"
                raise ChildError(msg)
            if "trace" in result:
                msg = f"loadgen {op} failed: {result.get('error')}\n{result['trace']}"
                raise ChildError(msg)
            return result

    def __enter__(self) -> LoadgenProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ChildError):
                self.command("close", 30)
        self.stop(json.dumps({"op": "quit"}))
        self.close_files()


class _LoggedChild:
    """A child that is not ours to ask, known by its log: stdout and stderr read as lines
    by a thread, which keeps the last ones for an error message and tells
    :meth:`_ready_after` each; ready once that says so, else stopped and an error."""

    def __init__(
        self, args: list[str], what: str, timeout: float, name: str, **options: Any
    ) -> None:
        self._tail: deque[str] = deque(maxlen=12)
        self._ready = threading.Event()
        self.proc = _spawn(
            self, args, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, **options
        )
        self._reader = threading.Thread(target=self._read, name=name, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop(None)
            self.close_files()
            msg = f"{what} did not come up: {self.tail()}"
            raise ChildError(msg)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _ready_after(self, line: str) -> bool:
        """Whether the child serves, now that it logged ``line``."""
        raise NotImplementedError

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._tail.append(line.rstrip())
                if self._ready_after(line):
                    self._ready.set()
        self._ready.set()  # it exited: the waiter checks poll()

    def tail(self) -> str:
        return " | ".join(self._tail)

    def stop(self, quit_line: str | None = None, timeout: float = 3.0) -> None:
        raise NotImplementedError

    def close_files(self) -> None:
        """The reader closes the pipe at its end of file (the child is gone by now)."""
        self._reader.join(5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close_files()


class RedisProcess(_LoggedChild):
    """A ``redis-server`` of the benchmark's own on a free port of 127.0.0.1, with no
    persistence (nothing written to disk); ``cpu_s()`` reads its CPU time from ``/proc``.

    Ready once it logs that it accepts connections. Killed by :meth:`stop`, by
    :func:`kill_all` and at exit.
    """

    READY = "Ready to accept connections"

    def __init__(self, timeout: float = 20.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            msg = "redis-server is not installed (apt-get install redis-server)"
            raise ChildError(msg)
        self.dir = tempfile.mkdtemp(prefix="channels_actor-bench-redis-")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        # fmt: off
        args = [
            executable,
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            "--daemonize", "no", "--loglevel", "notice", "--logfile", "",
        ]
        # fmt: on
        super().__init__(args, f"redis-server on port {self.port}", timeout, "redis-log")

    def _ready_after(self, line: str) -> bool:
        return self.READY in line

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server so far (``/proc/<pid>/stat``)."""
        return _pidstats.cpu_s(self.pid)

    def stop(self, quit_line: str | None = None, timeout: float = 3.0) -> None:
        """SIGKILL it (nothing to save) and reap it; remove its directory."""
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with _children_lock:
            _children.discard(self)
        shutil.rmtree(self.dir, ignore_errors=True)


class ServeProcess(_LoggedChild):
    """``channels-actor serve APP --workers N`` on a free port of 127.0.0.1.

    Ready once its log gave the port and every worker's ``Worker i (pid P) is
    serving``: the pids whose CPU the benchmark reads from ``/proc``. :meth:`stop`
    sends SIGTERM (the workers drain) and kills whatever still runs after ``grace``.
    """

    PORT = re.compile(r" at http://[^ ]+:(\d+) with ")
    SERVING = re.compile(r"Worker (\d+) \(pid (\d+)\) is serving")

    def __init__(
        self,
        app: str,
        workers: int,
        env: dict[str, str] | None = None,
        grace: float = 5.0,
        timeout: float = 60.0,
    ) -> None:
        self.kind = "channels_actor"  # what the load generator speaks to it
        self.workers = workers
        self.grace = grace
        self.port = 0
        self.worker_pids: dict[int, int] = {}  # worker index -> pid, as logged
        self.restarts = 0  # workers that started again after the first of their slot
        # fmt: off
        args = [
            sys.executable, "-m", "channels_actor", "serve", app,
            "--host", "127.0.0.1", "--port", "0", "--workers", str(workers),
            "--grace", str(grace), "--log-level", "info",
        ]
        # fmt: on
        super().__init__(
            args,
            f"channels-actor serve --workers {workers}",
            timeout,
            "serve-log",
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
        )

    @property
    def pids(self) -> list[int]:
        """The workers' pids, by worker index."""
        return [self.worker_pids[i] for i in sorted(self.worker_pids)]

    def _ready_after(self, line: str) -> bool:
        if not self.port and (found := self.PORT.search(line)):
            self.port = int(found.group(1))
        elif found := self.SERVING.search(line):
            index = int(found.group(1))
            self.restarts += index in self.worker_pids
            self.worker_pids[index] = int(found.group(2))
        return bool(self.port) and len(self.worker_pids) >= self.workers

    def stop(self, quit_line: str | None = None, timeout: float = 3.0) -> None:
        """SIGTERM (the workers drain), then kill the parent and the workers still alive."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(self.grace + timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.worker_pids.values():
            # started by our child and left behind by it: ours to end, if that pid is
            # still one of its workers (a drained worker is gone and its pid free)
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"channels_actor.serving.worker" in cmdline.read():
                    os.kill(pid, signal.SIGKILL)
        with _children_lock:
            _children.discard(self)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kill_all() -> None:
    """Kill every child still running (errors, Ctrl-C)."""
    with _children_lock:
        children = list(_children)
    for child in children:
        with contextlib.suppress(Exception):
            child.stop(None)
            child.close_files()


atexit.register(kill_all)
