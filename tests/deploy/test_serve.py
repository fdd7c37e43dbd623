"""``channels-actor serve``: real worker processes on 127.0.0.1, driven by signals.

Every wait is on something that happens: a line of the server's log (read on
a thread into a queue), a WebSocket close, a process's exit (a pidfd for the
workers, which are not our children). The worker pids come from the parent's
``Worker N (pid P) is serving`` lines; the app puts its pid in join replies
and writes a line per ``terminate`` (``serve_app.py``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from channels_actor.errors import ConfigurationError
from channels_actor.serving.loading import load_endpoint
from channels_actor.serving.supervision import MAX_START_FAILURES
from tests.deploy import serve_app
from tests.integration.wsclient import Client

ROOT = Path(__file__).parents[2]
APP = "tests.deploy.serve_app"
CLOSED = "('shutdown', 'closed')"


class Serve:
    """One ``channels-actor serve`` process, its log read line by line on a thread."""

    def __init__(
        self,
        args: tuple[str, ...],
        record: Path,
        console_script: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        if console_script:
            found = shutil.which("channels-actor", path=os.path.dirname(sys.executable))
            assert found, "the channels-actor console script is not installed (pip install -e .)"
            command = [found, "serve"]
        else:
            command = [sys.executable, "-m", "channels_actor", "serve"]
        self.proc = subprocess.Popen(
            [*command, "--port", "0", *args],
            cwd=ROOT,
            env={**os.environ, "SERVE_TEST_RECORD": str(record), **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="serve-log")
        self._reader.start()
        self.workers: dict[int, int] = {}  # index -> pid, as last seen serving

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The next log line matching ``pattern`` (lines before it are passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {timeout}s:\n{self.text}")
            if line is None:
                raise AssertionError(
                    f"serve ended before a line matching {pattern!r}:\n{self.text}"
                )
            found = re.search(pattern, line)
            if found:
                return found

    def serving(self) -> int:
        """A worker's next ``is serving`` line; its pid."""
        found = self.expect(r"Worker (\d+) \(pid (\d+)\) is serving")
        self.workers[int(found[1])] = int(found[2])
        return int(found[2])

    def started(self, workers: int = 1) -> int:
        """Wait until ``workers`` workers serve; the port."""
        port = int(self.expect(r"at http://127\.0\.0\.1:(\d+) with")[1])
        for _ in range(workers):
            self.serving()
        return port

    @property
    def text(self) -> str:
        return "".join(self.log)

    def wait(self, timeout: float = 20.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its workers see their control socket close and drain
            self.proc.wait()
        self._reader.join(15)  # the workers hold the log pipe until they exit
        if self._reader.is_alive():  # a worker that did not: nothing outlives the test
            for pid in self.workers.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._reader.join(5)
        if self.proc.stderr is not None and not self._reader.is_alive():
            self.proc.stderr.close()  # (closing it under the reader would block on its lock)


Starter = Callable[..., "Serve"]
Connector = Callable[[int], Client]


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.txt"


@pytest.fixture
def serve(record: Path) -> Iterator[Starter]:
    started: list[Serve] = []

    def start(*args: str, console_script: bool = False, env: dict[str, str] | None = None) -> Serve:
        server = Serve(args, record, console_script, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def clients() -> Iterator[Connector]:
    opened: list[Client] = []

    def connect(port: int) -> Client:
        client = Client(port)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def records(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    """Wait for a process that is not our child to exit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"pid {pid} still running after {timeout}s"
    finally:
        os.close(fd)


def joined_pid(client: Client, topic: str) -> int:
    reply = client.join(topic)
    assert reply[3] == "phx_reply" and reply[4]["status"] == "ok", reply
    return int(reply[4]["response"]["pid"])


# one worker ------------------------------------------------------------------------


def test_one_worker_serves_a_websocket_client(serve: Starter, clients: Connector) -> None:
    server = serve(f"{APP}:endpoint", console_script=True)
    port = server.started()
    client = clients(port)
    assert joined_pid(client, "rooms:one") == server.workers[1]
    client.send(["1", "2", "rooms:one", "shout", {"n": 1}])
    frames = [client.recv(), client.recv()]
    assert ["1", "2", "rooms:one", "phx_reply", {"status": "ok", "response": {}}] in frames
    assert [None, None, "rooms:one", "shout", {"n": 1, "from": server.workers[1]}] in frames


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_drains_the_worker(
    serve: Starter, clients: Connector, record: Path, signum: signal.Signals
) -> None:
    server = serve(f"{APP}:endpoint")
    port = server.started()
    client = clients(port)
    pid = joined_pid(client, "rooms:drain")
    server.proc.send_signal(signum)
    assert client.wait_closed(timeout=10) == 1012
    assert server.wait() == 0
    assert f"terminate {pid} rooms:drain {CLOSED}" in records(record)
    assert f"Worker 1 (pid {pid}) stopped" in server.text


def test_a_worker_still_alive_after_the_grace_is_killed(
    serve: Starter, clients: Connector, record: Path
) -> None:
    server = serve(f"{APP}:endpoint", "--grace", "1")
    client = clients(server.started())
    pid = joined_pid(client, "rooms:hang")  # drains, then a thread keeps it from exiting
    server.proc.send_signal(signal.SIGTERM)
    assert client.wait_closed(timeout=10) == 1012
    assert server.wait() == 1
    killed = rf"Worker 1 \(pid {pid}\) was still running 1\.\ds after SIGTERM; killing it"
    assert re.search(killed, server.text)
    assert f"terminate {pid} rooms:hang {CLOSED}" in records(record)


def test_a_second_stop_signal_kills_the_workers_at_once(serve: Starter, clients: Connector) -> None:
    server = serve(f"{APP}:endpoint")  # the default grace: 30 s
    client = clients(server.started())
    pid = joined_pid(client, "rooms:hang")
    server.proc.send_signal(signal.SIGTERM)
    server.expect(r"SIGTERM: draining 1 worker")
    assert client.wait_closed(timeout=10) == 1012
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 1
    assert "Second stop signal: killing the workers still draining" in server.text
    assert f"Worker 1 (pid {pid}) was still running" in server.text


def test_a_killed_worker_is_restarted_and_the_port_serves_again(
    serve: Starter, clients: Connector
) -> None:
    server = serve(f"{APP}:endpoint")
    port = server.started()
    first = server.workers[1]
    os.kill(first, signal.SIGKILL)
    server.expect(rf"Worker 1 \(pid {first}\) killed by SIGKILL after serving .*; restarting it")
    second = server.serving()
    assert second != first
    assert joined_pid(clients(port), "rooms:again") == second
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_workers_that_fail_as_they_start_are_given_up(serve: Starter) -> None:
    server = serve(f"{APP}:fails_in_workers")
    assert server.wait(30) == 1
    assert server.text.count("could not start") == MAX_START_FAILURES
    assert "RuntimeError: this app fails in every worker" in server.text  # the traceback
    delays = re.findall(r"before serving; restarting it in ([\d.]+)s", server.text)
    assert [float(d) for d in delays] == [0.1, 0.2, 0.4, 0.8]  # backing off, not spinning
    assert f"Worker 1 failed to start {MAX_START_FAILURES} times in a row" in server.text


def test_a_worker_whose_parent_dies_drains_and_exits(
    serve: Starter, clients: Connector, record: Path
) -> None:
    server = serve(f"{APP}:endpoint")
    client = clients(server.started())
    pid = joined_pid(client, "rooms:orphan")
    server.proc.kill()
    assert client.wait_closed(timeout=10) == 1012
    wait_gone(pid)
    assert f"terminate {pid} rooms:orphan {CLOSED}" in records(record)


# several workers ---------------------------------------------------------------------


def receive(client: Client, count: int) -> list[object]:
    return [client.recv(timeout=5) for _ in range(count)]


def test_two_workers_on_redis_share_broadcasts_and_both_drain(
    serve: Starter, clients: Connector, record: Path, redis_url: str
) -> None:
    server = serve(
        f"{APP}:redis_endpoint()", "--workers", "2", env={"SERVE_TEST_REDIS_URL": redis_url}
    )
    port = server.started(workers=2)
    on: dict[int, Client] = {}  # worker pid -> a client it serves
    for attempt in range(64):  # the kernel spreads connections by a hash of their ports
        client = clients(port)
        pid = joined_pid(client, f"rooms:probe{attempt}")
        if pid in on:
            client.close()
            continue
        on[pid] = client
        assert joined_pid(client, "rooms:both") == pid
        if len(on) == 2:
            break
    assert sorted(on) == sorted(server.workers.values()), "both workers serve clients"
    (first, a), (second, b) = sorted(on.items())

    a.send(["1", "5", "rooms:both", "shout", {"n": 1}])
    assert [None, None, "rooms:both", "shout", {"n": 1, "from": first}] in receive(a, 2)
    assert b.recv(timeout=5) == [None, None, "rooms:both", "shout", {"n": 1, "from": first}]
    b.send(["1", "5", "rooms:both", "shout", {"n": 2}])
    assert [None, None, "rooms:both", "shout", {"n": 2, "from": second}] in receive(b, 2)
    assert a.recv(timeout=5) == [None, None, "rooms:both", "shout", {"n": 2, "from": second}]

    server.proc.send_signal(signal.SIGTERM)
    assert a.wait_closed(timeout=10) == 1012
    assert b.wait_closed(timeout=10) == 1012
    assert server.wait() == 0
    done = records(record)
    for pid in (first, second):
        assert f"terminate {pid} rooms:both {CLOSED}" in done
        assert re.search(rf"Worker \d \(pid {pid}\) stopped", server.text)


# what cannot be served ----------------------------------------------------------------


def test_several_workers_need_a_cluster_pubsub(serve: Starter) -> None:
    server = serve(f"{APP}:endpoint", "--workers", "2")
    assert server.wait() == 2
    assert "--workers 2 needs a PubSub that crosses processes" in server.text
    assert 'RedisPubSub("redis://' in server.text
    assert "Started Worker" not in server.text


def test_an_app_that_cannot_be_loaded_exits_2_before_any_worker(serve: Starter) -> None:
    server = serve("tests.deploy.not_there:endpoint", "--workers", "2")
    assert server.wait() == 2
    assert "No module named 'tests.deploy.not_there'" in server.text
    assert "Started Worker" not in server.text


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "Expected module:endpoint"),
        (f"{APP}:", "Expected module:endpoint"),
        (f"{APP}:missing", f"{APP} has no attribute 'missing'"),
        (f"{APP}:record", f"{APP}:record() raised TypeError"),
        (f"{APP}:UserSocket", f"{APP}:UserSocket() returned a UserSocket, not an Endpoint"),
        (f"{APP}:wsgi", "is a method of an Endpoint"),
        (f"{APP}:_NEVER", f"{APP}:_NEVER is not an Endpoint nor a function returning one"),
        ("tests.deploy.not_there:endpoint", "No module named 'tests.deploy.not_there'"),
    ],
)
def test_load_endpoint_says_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load_endpoint(spec)


def test_load_endpoint_takes_an_endpoint_or_a_factory() -> None:
    assert load_endpoint(f"{APP}:endpoint") is serve_app.endpoint
    made = load_endpoint(f"{APP}:build()")
    assert made is not serve_app.endpoint and "/socket" in made.mounts
    assert "/socket" in load_endpoint(f"{APP}:build").mounts
