"""The servers under test of the network benchmarks, one kind per process.

Usage::

    python -m benchmarks.servers <kind> [--port 0] [--host 127.0.0.1]
    python -m benchmarks.servers channels_actor --redis URL --node-name NAME

``kind`` is one of:

``channels_actor``
    an :class:`~channels_actor.Endpoint` (defaults: pool of 8 workers, reactor,
    no compression) with ``/socket`` routing ``fan:*`` to :class:`BenchChannel`
    (join ok; ``handle_in("new_msg")`` broadcasts the payload to the topic,
    the chat pattern, on the fastlane) and ``fani:*`` to
    :class:`InterceptChannel` (the same with ``intercept = ["new_msg"]`` and a
    ``handle_out`` that pushes, so every delivery runs in each subscriber's
    actor). Any other topic joins a :class:`BenchChannel`. With ``--redis URL``
    its PubSub is ``RedisPubSub(URL, NAME)`` (``--node-name``): a node of a
    cluster (the ``fanout-cluster`` scenario runs two), and ``stats`` adds the
    adapter's counters (``pubsub_lost``, ``pubsub_refused``, ...).
    ``channels-actor serve benchmarks.servers:serve_app`` serves the same endpoint
    from worker processes (the ``fanout-intercept-workers`` scenario).
``bare-batched``
    the ceiling of this load generator: the least work a broadcast server can
    do. The bare server below, but a received message is framed once and
    queued; one writer thread takes up to 64 queued frames at a time (the
    batch channels_actor's registry dispatches at most) and writes them with
    one ``socket.sendall`` per connection. The queue is bounded: when it is
    full the receiving connection's reader thread waits, so TCP slows the
    publisher down.
``bare-sendall``
    the bare server, but the message is framed once and the pre-framed bytes
    are written with one ``socket.sendall`` per connection per message: the
    cheapest loop without coalescing.
``bare``
    the per-delivery loop: simple-websocket connections behind a one-thread
    accept loop (the handshake is done inline by ``simple_websocket.Server``,
    which then runs its own reader thread per connection). A text message
    received on any connection (already JSON-encoded) is written to every
    connection with ``ws.send`` in a plain loop, on the receiving connection's
    reader thread: simple-websocket frames every send, so every delivery is
    framed and written on its own. Each connection gets ``{"joined":1}`` once
    it is registered.
``socketio``
    python-socketio in threading mode (``async_mode="threading"``: its
    simple-websocket transport) served by werkzeug's threaded WSGI server;
    ``connect`` enters room ``lobby``; ``new_msg`` is emitted to the room;
    ``join`` (with an ack) enters the room it names.
``websockets``
    the ``websockets`` asyncio server; a connection gets ``{"joined":1}``, and
    every message it sends goes to ``websockets.broadcast`` over all
    connections.

Protocol with the parent: the first stdout line is JSON
``{"kind", "port", "pid"}``; then each stdin line is a command answered by
one JSON line on stdout: ``stats`` (CPU seconds of the whole process, RSS,
threads, open connections) or ``quit``. End of stdin (the parent went away)
exits the process too, so a crashed benchmark leaves no server behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from benchmarks import _util

KINDS = ("channels_actor", "bare-batched", "bare-sendall", "bare", "socketio", "websockets")
BARE_KINDS = ("bare-batched", "bare-sendall", "bare")
JOINED_ACK = '{"joined":1}'
#: bare-batched: frames written in one sendall at most (channels_actor's registry BATCH),
#: and frames queued at most before a reader thread waits.
BATCH = 64
MAX_QUEUED = 4096


def process_stats() -> dict[str, Any]:
    """This process's CPU time (all threads, user + system), RSS and thread count."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    status: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as lines:
        for line in lines:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                status[key] = int(rest.split()[0])
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "rss_kib": status.get("VmRSS"),
        "hwm_kib": status.get("VmHWM"),
        "threads": status.get("Threads"),
        "monotonic": time.monotonic(),
        "ctx_voluntary": usage.ru_nvcsw,
        "ctx_involuntary": usage.ru_nivcsw,
    }


def control_loop(
    count: Callable[[], int], extra: Callable[[], dict[str, Any]] | None = None
) -> None:
    """Answer the parent's commands on stdin until ``quit`` or end of input, then exit.

    ``stats`` replies :func:`process_stats`, ``connections`` (``count()``) and
    whatever ``extra()`` adds.
    """
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            stats = process_stats()
            try:
                stats["connections"] = count()
                if extra is not None:
                    stats.update(extra())
            except Exception as exc:  # a count racing a change must not kill the server
                stats["connections"] = None
                stats["count_error"] = repr(exc)
            reply(stats)
        elif command == "quit":
            break
        elif command:
            reply({"error": f"unknown command {command!r}"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def announce(kind: str, port: int, **extra: Any) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reply({"kind": kind, "port": port, "pid": os.getpid(), "nofile": soft, **extra})


# channels_actor ------------------------------------------------------------------------


#: ``serve_app`` (the app of ``channels-actor serve``) reads its set-up from these.
REDIS_ENV = "CHANNELS_ACTOR_BENCH_REDIS"
OPTIONS_ENV = "CHANNELS_ACTOR_BENCH_OPTIONS"
#: Endpoint options of every channels_actor server here, under the caller's. Clients of
#: the load generator send no heartbeats: keep them open for the run.
BENCH_CONFIG: dict[str, Any] = {"check_origin": False, "heartbeat_timeout": 3600.0}


def make_endpoint(
    options: dict[str, Any], redis_url: str | None = None, node_name: str | None = None
) -> Any:
    """The channels_actor server under test: ``fan:*`` and ``fani:*`` on ``/socket``;
    ``RedisPubSub(redis_url, node_name)`` when ``redis_url`` is given."""
    from channels_actor import Channel, Endpoint, RedisPubSub, SocketHandler, broadcast, push

    class BenchChannel(Channel):
        def join(self, topic: str, payload: Any, socket: Any) -> Any:
            return ("ok", socket)

        def handle_in(self, event: str, payload: Any, socket: Any) -> Any:
            if event == "new_msg":
                broadcast(socket, "new_msg", payload)
            return ("noreply", socket)

    class InterceptChannel(BenchChannel):
        intercept = ("new_msg",)

        def handle_out(self, event: str, payload: Any, socket: Any) -> Any:
            push(socket, event, payload)
            return ("noreply", socket)

    class BenchSocket(SocketHandler):
        channels = {"fani:*": InterceptChannel, "*": BenchChannel}  # noqa: RUF012

    config = {**BENCH_CONFIG, **options}
    pubsub = RedisPubSub(redis_url, node_name) if redis_url else None
    endpoint = Endpoint(pubsub=pubsub, **config)
    endpoint.socket("/socket", BenchSocket)
    return endpoint


def serve_app() -> Any:
    """The endpoint for ``channels-actor serve benchmarks.servers:serve_app``: each worker
    makes its own, with ``RedisPubSub($CHANNELS_ACTOR_BENCH_REDIS)`` (its default node
    name) when that is set, and the ``KEY=JSON`` options of ``$CHANNELS_ACTOR_BENCH_OPTIONS``
    (a JSON list)."""
    items = json.loads(os.environ.get(OPTIONS_ENV) or "[]")
    return make_endpoint(parse_options(items), os.environ.get(REDIS_ENV) or None)


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=JSON`` strings as Endpoint options."""
    options = {}
    for item in items:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    return options


def serve_channels_actor(
    host: str,
    port: int,
    options: dict[str, Any],
    redis_url: str | None = None,
    node_name: str | None = None,
) -> None:
    endpoint = make_endpoint(options, redis_url, node_name)
    server = endpoint.start(host, port, backlog=4096)
    announce(
        "channels_actor",
        server.port,
        config={k: str(v) for k, v in {**BENCH_CONFIG, **options}.items()},
        pubsub=type(endpoint.pubsub).__name__,
        node_name=endpoint.pubsub.node_name if redis_url else None,
    )

    def adapter_stats() -> dict[str, Any]:
        return {k: v for k, v in endpoint.stats().items() if k.startswith("pubsub_")}

    control_loop(lambda: endpoint.connection_count, adapter_stats if redis_url else None)


# bare simple-websocket -----------------------------------------------------------------


def text_frame(data: bytes) -> bytes:
    """An unmasked, final text frame (what a server writes)."""
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + data


class BareHub:
    """Every open simple-websocket connection, and the plain broadcast loop."""

    def __init__(self, preframed: bool = False) -> None:
        self.preframed = preframed
        self.lock = threading.Lock()
        self.connections: list[Any] = []
        self.snapshot: tuple[Any, ...] = ()
        self.ack = text_frame(JOINED_ACK.encode())

    def add(self, ws: Any) -> None:
        with self.lock:
            self.connections.append(ws)
            self.snapshot = tuple(self.connections)

    def remove(self, ws: Any) -> None:
        with self.lock:
            if ws in self.connections:
                self.connections.remove(ws)
                self.snapshot = tuple(self.connections)

    def broadcast(self, message: str | bytes) -> None:
        """Write the received (already JSON-encoded) message to every connection.

        ``bare``: ``ws.send`` per connection, the loop MEASURED.md calls bare:
        simple-websocket frames every send (wsproto), then writes it.
        ``bare-sendall``: framed once, then one ``sendall`` per connection.
        """
        dead = []
        if self.preframed:
            data = message.encode() if isinstance(message, str) else bytes(message)
            wire = text_frame(data)
            for ws in self.snapshot:
                try:
                    ws.sock.sendall(wire)
                except OSError:
                    dead.append(ws)
        else:
            for ws in self.snapshot:
                try:
                    ws.send(message)
                except Exception:
                    dead.append(ws)
        for ws in dead:
            self.remove(ws)


class BatchedHub(BareHub):
    """``bare-batched``: frame once, queue, and one writer thread that sends up to
    :data:`BATCH` queued frames to each connection in one ``sendall``."""

    def __init__(self) -> None:
        super().__init__(preframed=True)
        self.queued: deque[bytes] = deque()
        self.changed = threading.Condition(threading.Lock())
        threading.Thread(target=self._write_loop, name="bare-batched", daemon=True).start()

    def broadcast(self, message: str | bytes) -> None:
        """Frame and queue; wait while the queue is full (TCP then slows the sender)."""
        data = message.encode() if isinstance(message, str) else bytes(message)
        wire = text_frame(data)
        with self.changed:
            while len(self.queued) >= MAX_QUEUED:
                self.changed.wait()
            self.queued.append(wire)
            if len(self.queued) == 1:
                self.changed.notify_all()

    def _write_loop(self) -> None:
        queued = self.queued
        while True:
            with self.changed:
                while not queued:
                    self.changed.wait()
                full = len(queued) >= MAX_QUEUED
                batch = [queued.popleft() for _ in range(min(BATCH, len(queued)))]
                if full:
                    self.changed.notify_all()
            wire = b"".join(batch)
            dead = []
            for ws in self.snapshot:
                try:
                    ws.sock.sendall(wire)
                except OSError:
                    dead.append(ws)
            for ws in dead:
                self.remove(ws)


class _BroadcastInbox(list[Any]):
    """simple-websocket appends each received message here (reader thread): broadcast it."""

    def __init__(self, hub: BareHub) -> None:
        super().__init__()
        self._hub = hub

    def append(self, message: Any) -> None:
        self._hub.broadcast(message)


def _read_head(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    return data


def _environ(head: bytes, sock: socket.socket) -> dict[str, Any]:
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "werkzeug.socket": sock,
    }
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = "HTTP_" + name.strip().upper().replace("-", "_")
        if key == "HTTP_SEC_WEBSOCKET_EXTENSIONS":
            continue  # refuse permessage-deflate, as channels_actor does by default
        environ[key] = value.strip()
    return environ


def serve_bare(host: str, port: int, kind: str = "bare") -> None:
    import simple_websocket

    hub = BatchedHub() if kind == "bare-batched" else BareHub(preframed=kind == "bare-sendall")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(4096)

    def accept_loop() -> None:
        while True:
            try:
                sock, _address = listener.accept()
            except OSError:
                return
            try:
                sock.settimeout(5.0)
                head = _read_head(sock)
                if head is None:
                    sock.close()
                    continue
                sock.settimeout(None)
                ws = simple_websocket.Server(_environ(head, sock))
                ws.input_buffer = _BroadcastInbox(hub)
                hub.add(ws)
                sock.sendall(hub.ack)
            except Exception as exc:
                print(f"bare: handshake failed: {exc!r}", file=sys.stderr)
                try:
                    sock.close()
                except OSError:
                    pass

    threading.Thread(target=accept_loop, name="bare-accept", daemon=True).start()
    announce(kind, listener.getsockname()[1])
    control_loop(lambda: len(hub.snapshot))


# python-socketio (threading) -----------------------------------------------------------


def serve_socketio(host: str, port: int) -> None:
    import socketio
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    sio = socketio.Server(async_mode="threading", cors_allowed_origins="*")
    connected: set[str] = set()

    @sio.event
    def connect(sid: str, environ: Any, auth: Any = None) -> None:
        sio.enter_room(sid, "lobby")
        connected.add(sid)

    @sio.event
    def disconnect(sid: str, *args: Any) -> None:
        connected.discard(sid)

    @sio.on("new_msg")
    def new_msg(sid: str, data: Any) -> None:
        sio.emit("new_msg", data, room="lobby")

    @sio.on("join")
    def join(sid: str, data: Any) -> str:
        sio.enter_room(sid, data["room"])
        return "ok"

    app = socketio.WSGIApp(sio)
    server = make_server(host, port, app, threaded=True)
    server.socket.listen(4096)
    threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True).start()
    announce(
        "socketio",
        server.server_port,
        versions={
            "python-socketio": _version("python-socketio"),
            "python-engineio": _version("python-engineio"),
            "server": "werkzeug threaded",
        },
    )
    control_loop(lambda: len(connected))


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# websockets (asyncio) ------------------------------------------------------------------


def serve_websockets(host: str, port: int) -> None:
    import asyncio

    from websockets.asyncio.server import broadcast, serve

    connections: set[Any] = set()

    async def handler(ws: Any) -> None:
        connections.add(ws)
        try:
            await ws.send(JOINED_ACK)
            async for message in ws:
                broadcast(connections, message)
        finally:
            connections.discard(ws)

    async def main() -> None:
        async with serve(handler, host, port, backlog=4096) as server:
            bound = next(iter(server.sockets)).getsockname()[1]
            announce("websockets", bound, versions={"websockets": _version("websockets")})
            threading.Thread(
                target=control_loop, args=(lambda: len(connections),), daemon=True
            ).start()
            await asyncio.Future()  # until the control thread exits the process

    asyncio.run(main())


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="channels_actor: an Endpoint option, such as pool_size=4 (repeatable)",
    )
    parser.add_argument(
        "--redis", metavar="URL", help="channels_actor: RedisPubSub(URL) instead of the embedded"
    )
    parser.add_argument("--node-name", help="channels_actor with --redis: this node's name")
    args = parser.parse_args(argv)
    if (args.redis or args.node_name) and args.kind != "channels_actor":
        parser.error("--redis and --node-name are for the channels_actor kind only")
    _util.raise_nofile()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.kind == "channels_actor":
        serve_channels_actor(
            args.host, args.port, parse_options(args.option), args.redis, args.node_name
        )
    elif args.kind in BARE_KINDS:
        serve_bare(args.host, args.port, args.kind)
    elif args.kind == "socketio":
        serve_socketio(args.host, args.port)
    else:
        serve_websockets(args.host, args.port)


if __name__ == "__main__":
    main()
