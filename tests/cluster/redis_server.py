"""A real ``redis-server`` per test session, on a free port, that tests may kill and restart.

Tests never use the machine's Redis on 6379: each session starts its own with
no persistence, so tests are isolated and free to kill it mid-run. Without
``redis-server`` the tests that need it skip, unless ``CHANNELS_ACTOR_REQUIRE_ALL=1``
(CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

__all__ = ["RedisServer", "free_port", "require_redis_server"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_redis_server() -> str:
    """The path of ``redis-server``, or skip (fail under ``CHANNELS_ACTOR_REQUIRE_ALL=1``)."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}; CHANNELS_ACTOR_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)
    return path


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``kill()`` and ``start()`` keep its port."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="channels_actor-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.dir,
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:  # polling a port that is not open yet: no event to wait on
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server (what a crash looks like) and wait for it to go."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
