"""Several endpoint processes behind one real ``redis-server``, with phoenix.js clients on each.

Each node is its own process (``tests/cluster/cluster_app.py``: an ``Endpoint`` on
``RedisPubSub``), so nothing is shared but Redis. One Node process
(``tests/js/cluster_client.js``) runs phoenix.js clients on every node; the test sends
it commands on stdin and reads what the clients observe from its stdout, one JSON
line each, on a thread, through a queue, with a timeout on every wait. The nodes are
told to broadcast through their HTTP route ``POST /broadcast`` and show their counters
at ``GET /stats``.

Nothing is slept on. To show that something did *not* arrive, the same publisher
sends a marker after it: one publisher's broadcasts arrive in order on every node,
so the marker comes after anything sent before it. Recovery after a Redis restart is
awaited by probes, re-sent until every client on every node has one from every node
(what a node sends while another is still resubscribing is lost, at most once).

The cluster of the tests that leave Redis alone is shared by the module (one per
size, on a Redis of its own); the outage test starts its own cluster on the
``redis_server`` fixture, which it kills.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.redis_server import RedisServer, require_redis_server

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = ROOT / "tests" / "js"
DRIVER = JS_DIR / "cluster_client.js"
NAMES = ("a", "b", "c")
WAIT = 10.0  # seconds for one expected observation
START_TIMEOUT = 20.0  # seconds for the node processes to be serving
STOP_TIMEOUT = 10.0  # seconds for a node to drain and exit on SIGTERM
SEQUENCE = 10_000  # sequenced messages per publisher
BATCH = 500  # of them asked for by one push (each is still its own broadcast)
SIZES = pytest.mark.parametrize("size", [2, 3], ids=["2nodes", "3nodes"])

Observation = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def _phoenix_js() -> None:
    """Node and phoenix.js are needed (missing: a failure under CHANNELS_ACTOR_REQUIRE_ALL=1)."""
    modules = JS_DIR / "node_modules"
    missing = shutil.which("node") is None or not all(
        (modules / name / "package.json").is_file() for name in ("phoenix", "ws")
    )
    if missing:
        reason = "cluster phoenix.js tests need `node` and `npm ci` in tests/js"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}; CHANNELS_ACTOR_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)


# ---------------------------------------------------------------------------------------
# processes


class Child:
    """A subprocess speaking JSON lines: stdin written by the test, stdout read on a thread
    into a queue, stderr kept in a file for failure messages."""

    def __init__(self, name: str, command: list[str], cwd: Path) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._queue: queue.Queue[Observation | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"stdout-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._queue.put(json.loads(line))
            except json.JSONDecodeError:
                self._queue.put({"event": "error", "error": f"not a JSON line: {line!r}"})
        self._queue.put(None)

    def get(self, timeout: float) -> Observation | None:
        """The next line; None at the end of the output; raises ``queue.Empty`` on timeout."""
        return self._queue.get(timeout=max(0.0, timeout))

    def send(self, line: Observation) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(line) + "\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it is still running after ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill (if still running), reap, and close every pipe and file."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


class NodeProcess:
    """One endpoint process of the cluster (``python -m tests.cluster.cluster_app``)."""

    def __init__(self, name: str, redis_url: str, namespace: str, backoff_max: float) -> None:
        self.name = name
        self.port = 0
        self.pid = 0
        command = [sys.executable, "-m", "tests.cluster.cluster_app", "--redis", redis_url]
        command += ["--node", name, "--namespace", namespace, "--backoff-max", str(backoff_max)]
        # stdin is a pipe only this test holds: if the test dies, the node stops
        self.child = Child(f"node-{name}", [*command, "--stop-on-eof"], ROOT)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def stderr(self) -> str:
        return self.child.stderr()

    def _expect(self, event: str, timeout: float) -> Observation:
        try:
            line = self.child.get(timeout)
        except queue.Empty:
            line = None
        if line is None or line.get("event") != event:
            pytest.fail(f"node {self.name}: expected {event!r}, got {line!r}\n{self.stderr()}")
        return line

    def wait_ready(self, timeout: float) -> None:
        ready = self._expect("ready", timeout)
        self.port, self.pid = ready["port"], ready["pid"]

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {} if data is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def broadcast(self, topic: str, event: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """``Endpoint.broadcast`` on this node: (200, ok) or (503, {"error": ...})."""
        return self.http("POST", "/broadcast", {"topic": topic, "event": event, "payload": payload})

    def stats(self) -> dict[str, Any]:
        status, body = self.http("GET", "/stats")
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    def stop(self) -> int:
        """SIGTERM, then the drain's "stopped" line and the exit status (fails on a hang)."""
        self.child.proc.send_signal(signal.SIGTERM)
        self._expect("stopped", STOP_TIMEOUT)
        code = self.child.wait(STOP_TIMEOUT)
        if code is None:
            pytest.fail(f"node {self.name} did not exit after SIGTERM\n{self.stderr()}")
        return code


class Cluster:
    """The nodes of one cluster: one namespace on one Redis."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes

    def describe(self) -> str:
        return "\n".join(f"--- node {node.name} stderr:\n{node.stderr()}" for node in self.nodes)

    def stop(self) -> None:
        """Drain every node with SIGTERM; each must exit 0."""
        codes = {node.name: node.stop() for node in self.nodes}
        assert codes == dict.fromkeys(codes, 0), f"{codes}\n{self.describe()}"


@contextlib.contextmanager
def start_cluster(redis_url: str, size: int, backoff_max: float = 5.0) -> Iterator[Cluster]:
    """``size`` node processes (started together), killed on the way out whatever happened."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    nodes: list[NodeProcess] = []
    try:
        for name in NAMES[:size]:
            nodes.append(NodeProcess(name, redis_url, namespace, backoff_max))
        deadline = time.monotonic() + START_TIMEOUT
        for node in nodes:
            node.wait_ready(deadline - time.monotonic())
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.child.kill()


@pytest.fixture(scope="module", params=[2, 3], ids=["2nodes", "3nodes"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster shared by the module's tests that leave Redis alone, on a Redis of its own."""
    redis = RedisServer(require_redis_server())
    try:
        redis.start()
        with start_cluster(redis.url, request.param) as running:
            yield running
            running.stop()
    finally:
        redis.stop()


# ---------------------------------------------------------------------------------------
# the phoenix.js clients


class Clients:
    """One ``node cluster_client.js``: phoenix.js clients on any node, driven by commands."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []
        self.child = Child("clients", ["node", str(DRIVER), "60000"], JS_DIR)
        self.wait_until(lambda: self.find("started"), "the driver started")

    def describe(self) -> str:
        stderr = self.child.stderr()
        tail = "\n".join(json.dumps(obs) for obs in self.seen[-40:])
        return f"last observations:\n{tail}\nnode stderr:\n{stderr}"

    def send(self, cmd: str, **fields: Any) -> None:
        self.child.send({"cmd": cmd, **fields})

    def find(self, event: str, **match: Any) -> list[Observation]:
        """The observations so far of ``event`` whose fields equal ``match``."""
        return [
            obs
            for obs in self.seen
            if obs.get("event") == event and all(obs.get(k) == v for k, v in match.items())
        ]

    def poll(self, done: Callable[[], Any], timeout: float) -> bool:
        """Read observations until ``done()`` is true (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            try:
                observation = self.child.get(deadline - time.monotonic())
            except queue.Empty:
                return False
            if observation is None:
                pytest.fail(f"the driver exited ({self.child.wait(WAIT)}); {self.describe()}")
            self.seen.append(observation)
            if observation.get("event") == "error":
                pytest.fail(f"the driver failed: {observation}; {self.describe()}")
        return True

    def wait_until(self, done: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
        if not self.poll(done, timeout):
            pytest.fail(f"not within {timeout}s: {what}; {self.describe()}")

    def connect(self, name: str, node: NodeProcess, **params: str) -> None:
        self.send("connect", client=name, url=node.url, params=params)

    def join(self, name: str, topic: str, **options: Any) -> None:
        self.send("join", client=name, topic=topic, **options)

    def wait_joined(self, names: list[str], topic: str, count: int = 1) -> dict[str, Observation]:
        """Each client's ``count``-th join reply of ``topic``, which must be "ok"."""

        def joined() -> dict[str, Observation]:
            found = {obs["client"]: obs for obs in self.find("joined", topic=topic, count=count)}
            return found if set(names) <= set(found) else {}

        self.wait_until(joined, f"{names} joined {topic} (join {count})")
        replies = joined()
        assert all(replies[name]["status"] == "ok" for name in names), replies
        return replies

    def push(self, name: str, topic: str, event: str, payload: Any = None) -> Observation:
        tag = uuid.uuid4().hex
        self.send("push", client=name, topic=topic, event=event, payload=payload or {}, tag=tag)
        self.wait_until(lambda: self.find("reply", tag=tag), f"{name}'s reply to {event}")
        return self.find("reply", tag=tag)[0]

    def messages(self, name: str, topic: str, event: str) -> list[Any]:
        """The payloads of ``event`` that client ``name`` received on ``topic``, in order."""
        return [
            obs["payload"] for obs in self.find("message", client=name, topic=topic, name=event)
        ]

    def close(self) -> None:
        """Disconnect every client and let the driver exit."""
        self.send("exit")
        self.wait_until(lambda: self.find("done"), "the driver disconnected its clients")
        assert self.child.wait(WAIT) == 0, self.describe()


@pytest.fixture
def clients() -> Iterator[Clients]:
    driver = Clients()
    try:
        yield driver
        driver.close()
    finally:
        driver.child.kill()


def unique_topic(kind: str) -> str:
    return f"rooms:{kind}-{uuid.uuid4().hex[:8]}"


def join_everywhere(
    clients: Clients, cluster: Cluster, topic: str, per_node: int, **options: Any
) -> list[str]:
    """``per_node`` clients on each node (named ``a1``, ``a2``, ``b1``...), joined to ``topic``."""
    names = []
    for node in cluster.nodes:
        for i in range(1, per_node + 1):
            name = f"{node.name}{i}"
            clients.connect(name, node)
            clients.join(name, topic, **options)
            names.append(name)
    replies = clients.wait_joined(names, topic)
    # each client is served by the node it connected to, each node by a process of its own
    assert {name: replies[name]["response"]["node"] for name in names} == {
        name: name[0] for name in names
    }
    assert len({replies[name]["response"]["pid"] for name in names}) == len(cluster.nodes)
    return names


# ---------------------------------------------------------------------------------------
# broadcasts


def test_a_broadcast_from_one_node_reaches_the_clients_of_every_node(
    cluster: Cluster, clients: Clients
) -> None:
    topic = unique_topic("bcast")
    names = join_everywhere(clients, cluster, topic, 2, record=["shout", "external"])
    for node in cluster.nodes:
        # from a channel (a client's push) and from the endpoint process itself
        clients.push(
            f"{node.name}1", topic, "broadcast", {"event": "shout", "body": {"from": node.name}}
        )
        assert node.broadcast(topic, "external", {"from": node.name}) == (200, {"ok": True})
    everyone = sorted(node.name for node in cluster.nodes)

    def everywhere(event: str) -> bool:
        return all(
            sorted(p["from"] for p in clients.messages(name, topic, event)) == everyone
            for name in names
        )

    clients.wait_until(
        lambda: everywhere("shout") and everywhere("external"), "every broadcast everywhere"
    )


def test_broadcast_from_excludes_only_the_sender(cluster: Cluster, clients: Clients) -> None:
    topic = unique_topic("bfrom")
    names = join_everywhere(clients, cluster, topic, 2, record=["shout", "marker"])
    for node in cluster.nodes:
        sender = f"{node.name}1"
        clients.push(
            sender, topic, "broadcast_from", {"event": "shout", "body": {"from": node.name}}
        )
        # the same channel's next broadcast: it reaches every client after the shout would
        clients.push(sender, topic, "broadcast", {"event": "marker", "body": {"from": node.name}})
    senders = [node.name for node in cluster.nodes]

    def markers_everywhere() -> bool:
        return all(
            sorted(p["from"] for p in clients.messages(name, topic, "marker")) == senders
            for name in names
        )

    clients.wait_until(markers_everywhere, "every sender's marker at every client")
    received = {
        name: sorted(p["from"] for p in clients.messages(name, topic, "shout")) for name in names
    }
    # a1's shout reaches a2 (same node) and b1, b2, ... (other nodes), never a1 itself
    assert received == {name: [s for s in senders if name != f"{s}1"] for name in names}


def test_sequences_of_every_publisher_arrive_complete_and_in_order_on_every_node(
    cluster: Cluster, clients: Clients
) -> None:
    topic = unique_topic("seq")
    publishers = [node.name for node in cluster.nodes]
    # on each node a publisher (x1) and a subscriber (x2); both count every sequence
    names = join_everywhere(clients, cluster, topic, 2, sequence="seq")
    for node in cluster.nodes:  # all publishing at once, each from its own channel
        clients.send(
            "publish",
            client=f"{node.name}1",
            topic=topic,
            event="seq",
            origin=node.name,
            count=SEQUENCE,
            batch=BATCH,
            tag="seq",
        )
    for name in names:
        clients.send("sequences", client=name, topic=topic, origins=publishers, tag="seq")
    clients.wait_until(
        lambda: (
            len(clients.find("sequences", tag="seq")) == len(names)
            and len(clients.find("published", tag="seq")) == len(publishers)
        ),
        f"{SEQUENCE} messages of each of {publishers} at each of {names}",
        timeout=40.0,
    )
    expected = {
        "count": SEQUENCE,
        "next": SEQUENCE,
        "errors": 0,
        "first_errors": [],
        "end": SEQUENCE,
    }
    for report in clients.find("sequences", tag="seq"):
        assert report["seen"] == dict.fromkeys(publishers, expected), report["client"]
    assert clients.find("close") == []  # nobody was too slow for this


# ---------------------------------------------------------------------------------------
# the "disconnect" id broadcast


def test_disconnect_by_id_closes_that_socket_on_every_node(
    cluster: Cluster, clients: Clients
) -> None:
    topic = unique_topic("byid")
    first = cluster.nodes[0]
    victims, bystanders = [], []
    for node in cluster.nodes:
        victim, bystander = f"{node.name}-42", f"{node.name}-7"
        clients.connect(victim, node, user="42")
        clients.connect(bystander, node, user="7")
        clients.join(victim, topic)
        clients.join(bystander, topic, record=["marker"])
        victims.append(victim)
        bystanders.append(bystander)
    clients.wait_joined(victims + bystanders, topic)

    assert first.broadcast("user:42", "disconnect", {}) == (200, {"ok": True})
    # the same publisher's next broadcast: a bystander that has it has seen the disconnect pass
    assert first.broadcast(topic, "marker", {}) == (200, {"ok": True})

    clients.wait_until(
        lambda: (
            all(clients.find("close", client=v) for v in victims)
            and all(clients.messages(b, topic, "marker") for b in bystanders)
        ),
        "the user:42 sockets closed and the marker everywhere",
    )
    # the server closed them (1001), so phoenix.js reconnects and rejoins, to the same node
    assert {
        v: [(o["code"], o["count"]) for o in clients.find("close", client=v)] for v in victims
    } == {v: [(1001, 1)] for v in victims}
    clients.wait_until(
        lambda: all(clients.find("open", client=v, count=2) for v in victims), "reconnects"
    )
    clients.wait_joined(victims, topic, count=2)
    for victim in victims:
        reply = clients.push(victim, topic, "whoami")["response"]
        assert (reply["node"], reply["id"]) == (victim[0], "user:42")
    assert [clients.find("close", client=b) for b in bystanders] == [[] for _ in bystanders]


# ---------------------------------------------------------------------------------------
# Redis killed and restarted


def _refused_during_outage(node: NodeProcess, topic: str) -> Any:
    """Broadcast from ``node`` until one is refused; the ones before it are queued and lost."""
    deadline = time.monotonic() + WAIT
    n = 0
    while time.monotonic() < deadline:
        status, body = node.broadcast(topic, "lost", {"n": n})
        if status == 503:
            return body
        assert status == 200, body
        n += 1
    pytest.fail(f"node {node.name} accepted {n} broadcasts for {WAIT}s with Redis down")


def _await_probes(
    clients: Clients, cluster: Cluster, names: list[str], topic: str, phase: str
) -> None:
    """Probe from every node until every client has one of ``phase`` from every node."""
    missing = {(name, node.name) for name in names for node in cluster.nodes}

    def update() -> bool:
        for name in names:
            for payload in clients.messages(name, topic, "probe"):
                if payload["phase"] == phase:
                    missing.discard((name, payload["from"]))
        return not missing

    deadline = time.monotonic() + 20.0
    while not update():
        if time.monotonic() > deadline:
            stats = {node.name: node.stats() for node in cluster.nodes}
            pytest.fail(f"no recovery: missing {sorted(missing)}; {stats}\n{cluster.describe()}")
        for node in cluster.nodes:
            if any(origin == node.name for _, origin in missing):
                node.broadcast(topic, "probe", {"from": node.name, "phase": phase})  # 503: retry
        clients.poll(update, 0.25)  # returns as soon as every probe is in


@SIZES
def test_redis_killed_and_restarted_every_node_recovers_and_counts_the_loss(
    size: int, redis_server: RedisServer, clients: Clients
) -> None:
    with start_cluster(redis_server.url, size, backoff_max=0.25) as cluster:
        topic = unique_topic("outage")
        names = join_everywhere(clients, cluster, topic, 1, record=["probe"])
        first = cluster.nodes[0]
        _await_probes(clients, cluster, names, topic, "before")  # the cluster works

        redis_server.kill()
        refused = _refused_during_outage(first, topic)
        assert "unreachable" in refused["error"], refused
        # nothing hangs meanwhile: every channel answers, every node reports
        for name in names:
            assert clients.push(name, topic, "whoami")["status"] == "ok"
        during = {node.name: node.stats() for node in cluster.nodes}

        redis_server.start()
        _await_probes(clients, cluster, names, topic, "after")
        after = {node.name: node.stats() for node in cluster.nodes}
        cluster.stop()  # nothing hangs: every node drains and exits
        logs = {node.name: node.stderr() for node in cluster.nodes}

    assert during[first.name]["connected"] is False, during
    for name, report in after.items():
        stats = report["stats"]
        assert report["connected"] is True, after
        assert stats.get("pubsub_outages", 0) >= 1, (name, stats)
        # one warning as each outage began and one as it ended
        log = logs[name]
        assert log.count("channels_actor.pubsub.redis: Lost redis") == stats["pubsub_outages"], log
        assert log.count(" is back after ") == stats["pubsub_outages"], log
    lost = after[first.name]["stats"]
    assert lost.get("pubsub_refused", 0) + lost.get("pubsub_lost", 0) > 0, lost
    # a Redis outage closes no client
    assert clients.find("close") == []
