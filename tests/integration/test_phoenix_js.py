"""The official phoenix.js client (1.8, under Node with ``ws``) against a real Endpoint.

Each test starts an endpoint on 127.0.0.1 (port 0) with :class:`JsSocket` mounted at
``/socket``, runs one scenario of ``tests/js/client.js`` in a Node subprocess and asserts
on the JSON lines it prints (one observation per line). Scenarios that need the Python
side to act (``endpoint.broadcast``, ``endpoint.stop``) print ``{"event": "ready"}``
first; the test reads stdout line by line with timeouts, acts, then reads on.

What the Python side saw (connects, joins, pushes, handle_out calls) is recorded in a
thread-safe :class:`Recorder` before the client can observe its consequence, so it is
complete once the scenario is; terminate reasons, which come later, go to a queue that
is read with timeouts. Nothing is slept on.

Node and npm are needed: without them the module is skipped, unless
``CHANNELS_ACTOR_REQUIRE_ALL=1`` is set, in which case it fails. ``npm ci`` runs in
``tests/js`` when its ``node_modules`` lack phoenix or ws.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from channels_actor import (
    Channel,
    Endpoint,
    Socket,
    SocketHandler,
    assign,
    broadcast,
    broadcast_from,
    push,
)

JS_DIR = Path(__file__).resolve().parent.parent / "js"
CLIENT = JS_DIR / "client.js"
NODE_TIMEOUT = 20.0  # seconds a whole scenario subprocess may take
SCENARIO_TIMEOUT_MS = 8000  # the script's own guard, reported as a JSON error line
WAIT = 5.0  # seconds to wait for one observation on either side

AUTH_TOKEN = "tok-123.secret"


# ---------------------------------------------------------------------------------------
# what the server saw


class Recorder:
    """Thread-safe record of the Python callbacks; terminate reasons go to a queue."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[tuple[Any, ...]] = []
        self.terminated: queue.Queue[tuple[str | None, Any]] = queue.Queue()

    def add(self, *item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self._cond:
            return [item for item in self.items if item[0] == kind]

    def terminate_reason(self, topic: str, timeout: float = WAIT) -> Any:
        """The next terminate reason of ``topic`` (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                got_topic, reason = self.terminated.get(timeout=max(0.0, remaining))
            except queue.Empty:
                pytest.fail(f"terminate was not called for {topic!r} within {timeout}s")
            if got_topic == topic:
                return reason


def _recorder(socket: Socket) -> Recorder:
    return socket.assigns["rec"]  # type: ignore[no-any-return]


class JsRoomChannel(Channel):
    """Answers each event the Node scenarios push; see tests/js/client.js."""

    intercept: ClassVar[list[str]] = ["filtered", "filtered_end"]

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        _recorder(socket).add("join", topic, dict(payload))
        if payload.get("refuse"):
            return ("error", {"reason": "unauthorized"})
        socket = assign(socket, name=payload.get("name"))
        return ("ok", {"topic": topic, "user_id": socket.assigns.get("user_id")}, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        _recorder(socket).add("in", socket.topic, event, payload)
        match event:
            case "reply_ok":
                return ("reply", "ok", socket)
            case "reply_map":
                return ("reply", ("ok", {"echo": payload}), socket)
            case "reply_custom":
                return ("reply", ("teapot", {"short": True}), socket)
            case "reply_error":
                return ("reply", "error", socket)
            case "reply_binary":
                return ("reply", ("ok", b"\x00\x01\xfe\xff"), socket)
            case "noreply":
                push(socket, "noted", {"n": payload["n"]})
                return ("noreply", socket)
            case "broadcast":
                broadcast(socket, payload["event"], payload["body"])
                return ("noreply", socket)
            case "broadcast_from":
                broadcast_from(socket, payload["event"], payload["body"])
                return ("noreply", socket)
            case "broadcast_binary":
                broadcast(socket, "bbin", b"\xca\xfe")
                return ("noreply", socket)
            case "echo_binary":
                push(socket, "bin", b"\xff" + payload)
                return (
                    "reply",
                    ("ok", {"type": type(payload).__name__, "size": len(payload)}),
                    socket,
                )
            case "raise":
                raise ValueError("handle_in blew up on purpose")
            case "stop_normal":
                return ("stop", "normal", socket)
        return ("reply", ("error", {"unknown": event}), socket)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        name = socket.assigns.get("name")
        _recorder(socket).add("out", event, name)
        if event == "filtered":
            if payload.get("skip") == name:
                return ("noreply", socket)
            push(socket, event, {**payload, "seen_by": name})
            return ("noreply", socket)
        return super().handle_out(event, payload, socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        _recorder(socket).terminated.put((socket.topic, reason))


class JsSocket(SocketHandler):
    """Refuses ``token=bad``; records params and the auth token; ids by ``user_id``."""

    channels: ClassVar[dict[str, type[Channel]]] = {"rooms:*": JsRoomChannel}
    recorder: ClassVar[Recorder]

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        self.recorder.add(
            "connect", dict(params), "auth_token" in connect_info, connect_info.get("auth_token")
        )
        if params.get("token") == "bad":
            return "error"
        return ("ok", assign(socket, user_id=params.get("user_id"), rec=self.recorder))

    def id(self, socket: Socket) -> str | None:
        user = socket.assigns.get("user_id")
        return f"users_socket:{user}" if user else None


# ---------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module", autouse=True)
def js_client() -> Path:
    """``tests/js/client.js`` with its node_modules installed (``npm ci`` when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "phoenix.js tests need `node` and `npm` on PATH (Node 20+)"
        if os.environ.get("CHANNELS_ACTOR_REQUIRE_ALL") == "1":
            pytest.fail(f"{reason}; CHANNELS_ACTOR_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)
    modules = JS_DIR / "node_modules"
    if not all((modules / name / "package.json").is_file() for name in ("phoenix", "ws")):
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {JS_DIR}:\n{result.stdout}\n{result.stderr}")
    return CLIENT


@dataclass
class Served:
    """A running endpoint, the URL phoenix.js connects to and what the server saw."""

    endpoint: Endpoint
    url: str
    rec: Recorder


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """An endpoint serving :class:`JsSocket` at ``/socket``; stopped after the test.

    Parametrize indirectly with a dict of ``Endpoint`` config to change it.
    """
    config = {"actor_mode": "pool", **getattr(request, "param", {})}
    rec = Recorder()
    handler = type("JsSocket", (JsSocket,), {"recorder": rec})
    endpoint = Endpoint(**config)
    endpoint.socket("/socket", handler)
    server = endpoint.start(host="127.0.0.1", port=0)
    try:
        yield Served(endpoint, f"ws://127.0.0.1:{server.port}/socket", rec)
    finally:
        endpoint.stop()


# ---------------------------------------------------------------------------------------
# running a scenario


class Scenario:
    """One ``node client.js <name> <url>`` run, read line by line with timeouts."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            ["node", str(CLIENT), name, url, str(SCENARIO_TIMEOUT_MS)],
            cwd=JS_DIR,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"node-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def __enter__(self) -> Scenario:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()

    def _describe(self) -> str:
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        lines = "\n".join(json.dumps(obs) for obs in self.seen)
        return f"scenario {self.name!r}; observations so far:\n{lines}\nstderr:\n{stderr}"

    def _next(self, timeout: float) -> dict[str, Any] | None:
        """The next observation, or None at the end of the output."""
        deadline = self._started + NODE_TIMEOUT
        try:
            line = self._lines.get(timeout=min(timeout, max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            pytest.fail(f"no output within {timeout}s; {self._describe()}")
        if line is None:
            return None
        try:
            observation: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}; {self._describe()}")
        self.seen.append(observation)
        if observation.get("event") == "error":
            pytest.fail(f"the scenario failed: {observation}; {self._describe()}")
        return observation

    def wait_event(self, event: str, timeout: float = WAIT) -> dict[str, Any]:
        """Read on until an observation with ``event`` (fails on end of output)."""
        while True:
            observation = self._next(timeout)
            if observation is None:
                pytest.fail(f"output ended before {event!r}; {self._describe()}")
            if observation.get("event") == event:
                return observation

    def finish(self, timeout: float = NODE_TIMEOUT) -> list[dict[str, Any]]:
        """Read to the end; require exit status 0 and a final "done"; return every observation."""
        while self._next(timeout) is not None:
            pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node did not exit; {self._describe()}")
        assert code == 0, f"node exited {code}; {self._describe()}"
        assert self.seen and self.seen[-1] == {"event": "done"}, self._describe()
        return self.seen


def run(name: str, served: Served) -> list[dict[str, Any]]:
    """Run a scenario that needs nothing from Python; return its observations."""
    with Scenario(name, served.url) as scenario:
        return scenario.finish()


def only(observations: list[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    """The observations of ``event`` whose fields equal ``match``."""
    return [
        obs
        for obs in observations
        if obs.get("event") == event and all(obs.get(k) == v for k, v in match.items())
    ]


def binary(hex_text: str) -> dict[str, str]:
    """How client.js prints an ArrayBuffer."""
    return {"$binary": hex_text}


# ---------------------------------------------------------------------------------------
# joins


@pytest.mark.parametrize(
    "served",
    [{"actor_mode": "pool"}, {"actor_mode": "thread"}],
    ids=["pool", "thread"],
    indirect=True,
)
def test_join_ok_with_reply_map_then_push(served: Served) -> None:
    seen = run("join_ok", served)
    assert only(seen, "join") == [
        {
            "event": "join",
            "topic": "rooms:lobby",
            "status": "ok",
            "response": {"topic": "rooms:lobby", "user_id": "u1"},
        }
    ]
    assert only(seen, "reply") == [
        {
            "event": "reply",
            "push": "reply_map",
            "status": "ok",
            "response": {"echo": {"hello": "world"}},
        }
    ]
    assert served.rec.of("join") == [("join", "rooms:lobby", {"name": "alice"})]


def test_join_refused_by_channel(served: Served) -> None:
    seen = run("join_error", served)
    assert only(seen, "join") == [
        {
            "event": "join",
            "topic": "rooms:secret",
            "status": "error",
            "response": {"reason": "unauthorized"},
        }
    ]


def test_join_unmatched_topic(served: Served) -> None:
    seen = run("join_unmatched", served)
    assert only(seen, "join") == [
        {
            "event": "join",
            "topic": "nowhere:1",
            "status": "error",
            "response": {"reason": "unmatched topic"},
        }
    ]
    assert served.rec.of("join") == []


# ---------------------------------------------------------------------------------------
# replies and pushes


@pytest.mark.parametrize(
    "served",
    [{"actor_mode": "pool"}, {"actor_mode": "thread"}],
    ids=["pool", "thread"],
    indirect=True,
)
def test_every_reply_form(served: Served) -> None:
    seen = run("replies", served)
    replies = {obs["push"]: (obs["status"], obs["response"]) for obs in only(seen, "reply")}
    assert replies == {
        "reply_ok": ("ok", {}),
        "reply_map": ("ok", {"echo": {"n": 1}}),
        "reply_custom": ("teapot", {"short": True}),
        "reply_error": ("error", {}),
        "reply_binary": ("ok", binary("0001feff")),
    }
    assert only(seen, "reply_type") == [
        {"event": "reply_type", "push": "reply_binary", "isArrayBuffer": True}
    ]


def test_noreply_then_a_reply_in_order(served: Served) -> None:
    seen = run("noreply", served)
    events = [obs for obs in seen if obs["event"] in ("message", "reply")]
    assert events == [
        {"event": "message", "name": "noted", "payload": {"n": 1}},
        {"event": "reply", "push": "reply_map", "status": "ok", "response": {"echo": {"n": 2}}},
    ]
    pushes = [item[2:] for item in served.rec.of("in")]
    assert pushes == [("noreply", {"n": 1}), ("reply_map", {"n": 2})]


# ---------------------------------------------------------------------------------------
# broadcasts


def test_broadcast_reaches_two_clients(served: Served) -> None:
    seen = run("broadcast", served)
    shouts = only(seen, "message", name="shout")
    assert sorted(obs["client"] for obs in shouts) == [1, 2]
    assert all(obs["payload"] == {"text": "hi all"} for obs in shouts)


def test_broadcast_from_skips_the_sender(served: Served) -> None:
    seen = run("broadcast_from", served)
    received = {obs["client"]: obs["names"] for obs in only(seen, "received")}
    assert received == {1: ["marker"], 2: ["shout", "marker"]}


def test_intercept_and_handle_out_filter(served: Served) -> None:
    seen = run("intercept", served)
    received = {obs["client"]: obs["messages"] for obs in only(seen, "received")}
    assert received == {
        1: [
            {"event": "filtered", "payload": {"skip": "bob", "seen_by": "alice"}},
            {"event": "filtered_end", "payload": {}},
        ],
        2: [{"event": "filtered_end", "payload": {}}],
    }
    outs = sorted(item[1:] for item in served.rec.of("out"))
    assert outs == [
        ("filtered", "alice"),
        ("filtered", "bob"),
        ("filtered_end", "alice"),
        ("filtered_end", "bob"),
    ]


def test_endpoint_broadcast_from_python(served: Served) -> None:
    with Scenario("external", served.url) as scenario:
        scenario.wait_event("ready")
        served.endpoint.broadcast("rooms:ext", "external", {"body": "from python"})
        message = scenario.wait_event("message")
        scenario.finish()
    assert message == {"event": "message", "name": "external", "payload": {"body": "from python"}}


# ---------------------------------------------------------------------------------------
# leaving, closing, crashing


def test_leave_terminates_with_left_and_closes_the_channel(served: Served) -> None:
    seen = run("leave", served)
    assert only(seen, "leave") == [{"event": "leave", "status": "ok"}]
    assert only(seen, "channel_close") == [{"event": "channel_close", "state": "closed"}]
    # The server answers the leave, then closes the old join (phoenix.js drops both, as the
    # channel is gone already).
    frames = only(seen, "server_frame")
    join_ref = frames[0]["current_join_ref"]
    assert [(f["name"], f["join_ref"], f["payload"]) for f in frames] == [
        ("phx_reply", join_ref, {"status": "ok", "response": {}}),
        ("phx_close", join_ref, {}),
    ]
    assert frames[1]["ref"] == join_ref
    assert served.rec.terminate_reason("rooms:leave") == ("shutdown", "left")


def test_leave_then_immediate_disconnect_still_terminates_left(served: Served) -> None:
    # phoenix.js answers leave() itself; a disconnect() right after puts the close frame
    # just behind phx_leave. The leave was read first, so it must win, as in Phoenix.
    for _ in range(15):
        run("leave_then_disconnect", served)
        assert served.rec.terminate_reason("rooms:leave") == ("shutdown", "left")


def test_client_disconnect_terminates_with_closed(served: Served) -> None:
    seen = run("disconnect", served)
    assert len(only(seen, "socket_close")) == 1
    assert served.rec.terminate_reason("rooms:gone") == ("shutdown", "closed")


@pytest.mark.parametrize(
    "served",
    [{"actor_mode": "pool"}, {"actor_mode": "thread"}],
    ids=["pool", "thread"],
    indirect=True,
)
def test_crash_errors_the_channel_and_phoenix_js_rejoins(served: Served) -> None:
    seen = run("crash", served)
    assert [obs["count"] for obs in only(seen, "join", status="ok")] == [1, 2]
    errors = only(seen, "channel_error")
    assert len(errors) == 1
    assert only(seen, "reply") == [
        {"event": "reply", "push": "reply_ok", "status": "ok", "response": {}}
    ]
    kind, exception = served.rec.terminate_reason("rooms:crash")
    assert kind == "error"
    assert isinstance(exception, ValueError)
    assert [item[1] for item in served.rec.of("join")] == ["rooms:crash", "rooms:crash"]


def test_stop_normal_closes_the_channel_without_rejoin(served: Served) -> None:
    seen = run("stop_normal", served)
    assert len(only(seen, "channel_close")) == 1
    assert only(seen, "channel_error") == []
    assert only(seen, "state") == [
        {
            "event": "state",
            "channel": "closed",
            "channels": 0,
            "connected": True,
            "pinged": True,
        }
    ]
    assert served.rec.terminate_reason("rooms:stop") == "normal"
    assert len(served.rec.of("join")) == 1


# ---------------------------------------------------------------------------------------
# the socket: heartbeat, serializers, binary, auth, refusals, closing codes


@pytest.mark.parametrize("served", [{"heartbeat_timeout": 0.5}], ids=["idle0.5s"], indirect=True)
def test_heartbeats_are_answered_and_keep_the_socket_open(served: Served) -> None:
    # Ten heartbeats 100 ms apart outlast the 0.5 s idle timeout (see the next test).
    seen = run("heartbeat", served)
    replies = only(seen, "heartbeat_reply")
    assert len(replies) == 10
    for reply in replies:
        assert reply["join_ref"] is None
        assert reply["payload"] == {"status": "ok", "response": {}}
    assert len({reply["ref"] for reply in replies}) == 10
    assert only(seen, "heartbeats") == [
        {"event": "heartbeats", "count": 10, "closes": 0, "connected": True}
    ]
    assert only(seen, "reply", status="ok")
    assert len(served.rec.of("connect")) == 1


@pytest.mark.parametrize("served", [{"heartbeat_timeout": 0.5}], ids=["idle0.5s"], indirect=True)
def test_without_heartbeats_the_idle_socket_is_closed(served: Served) -> None:
    seen = run("idle", served)
    assert only(seen, "socket_close") == [
        {"event": "socket_close", "code": 1001, "reason": "heartbeat timeout"}
    ]
    assert served.rec.terminate_reason("rooms:idle") == ("shutdown", "closed")


def test_v1_serializer_join_push_broadcast(served: Served) -> None:
    seen = run("v1", served)
    assert only(seen, "join", status="ok")
    raws = only(seen, "raw")
    join_reply, last = raws[0]["frame"], raws[1]["frame"]
    assert set(join_reply) == {"topic", "event", "payload", "ref"}
    assert join_reply["event"] == "phx_reply"
    assert join_reply["payload"]["status"] == "ok"
    assert only(seen, "reply") == [
        {"event": "reply", "push": "reply_map", "status": "ok", "response": {"echo": {"v": 1}}}
    ]
    assert only(seen, "message") == [
        {"event": "message", "name": "shout", "payload": {"text": "v1"}}
    ]
    assert last == {"topic": "rooms:v1", "event": "shout", "payload": {"text": "v1"}, "ref": None}
    connect = served.rec.of("connect")[0]
    assert connect[1]["vsn"] == "1.0.0"


def test_binary_both_ways(served: Served) -> None:
    seen = run("binary", served)
    assert only(seen, "reply") == [
        {
            "event": "reply",
            "push": "echo_binary",
            "status": "ok",
            "response": {"type": "bytes", "size": 6},
        }
    ]
    received = [item[3] for item in served.rec.of("in") if item[2] == "echo_binary"]
    assert received == [bytes([0, 1, 2, 253, 254, 255])]
    assert only(seen, "message", name="bin") == [
        {
            "event": "message",
            "name": "bin",
            "payload": binary("ff000102fdfeff"),
            "isArrayBuffer": True,
        }
    ]
    assert only(seen, "message", name="bbin") == [
        {
            "event": "message",
            "name": "bbin",
            "payload": binary("cafe"),
            "isArrayBuffer": True,
        }
    ]


def test_auth_token_reaches_connect_info(served: Served) -> None:
    seen = run("auth_token", served)
    assert only(seen, "reply", status="ok")
    assert [item[2:] for item in served.rec.of("connect")] == [(True, AUTH_TOKEN)]


def test_connect_refused_fires_on_error_and_never_joins(served: Served) -> None:
    seen = run("connect_refused", served)
    assert only(seen, "socket_error") == [
        {"event": "socket_error", "opens": 0, "channel": "errored"}
    ]
    assert only(seen, "join") == []
    assert served.rec.of("connect")
    assert served.rec.of("join") == []


def test_disconnect_by_socket_id_closes_1001_and_phoenix_js_reconnects(served: Served) -> None:
    with Scenario("disconnect_by_id", served.url) as scenario:
        scenario.wait_event("ready")
        served.endpoint.broadcast("users_socket:u42", "disconnect", {})
        closed = scenario.wait_event("socket_close")
        reconnected = scenario.wait_event("reconnected")
        scenario.finish()
    assert closed["code"] == 1001
    assert reconnected == {"event": "reconnected", "opens": 2, "joins": 2}
    assert served.rec.terminate_reason("rooms:byid") == ("shutdown", "closed")
    assert len(served.rec.of("connect")) == 2


@pytest.mark.parametrize("served", [{"max_frame_size": 1024}], ids=["max1024"], indirect=True)
def test_oversized_frame_closes_1009(served: Served) -> None:
    seen = run("oversized", served)
    assert only(seen, "socket_close") == [{"event": "socket_close", "code": 1009}]
    assert [item for item in served.rec.of("in") if item[2] == "big"] == []
    assert served.rec.terminate_reason("rooms:big") == ("shutdown", "closed")


def test_endpoint_stop_closes_1012(served: Served) -> None:
    with Scenario("endpoint_stop", served.url) as scenario:
        scenario.wait_event("ready")
        served.endpoint.stop()
        closed = scenario.wait_event("socket_close")
        scenario.finish()
    assert closed["code"] == 1012
    assert served.rec.terminate_reason("rooms:stopping") == ("shutdown", "closed")
