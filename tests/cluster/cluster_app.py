"""One node of a test cluster: an endpoint process on ``RedisPubSub``.

    python -m tests.cluster.cluster_app --redis redis://127.0.0.1:P/0 --node a \
        [--namespace NS] [--port 0] [--backoff-max SECONDS] [--stop-on-eof]

It serves :class:`ClusterSocket` at ``/socket`` (phoenix.js connects to
``ws://127.0.0.1:<port>/socket/websocket``) and a small HTTP app beside it:

* ``GET /stats``: ``{"node", "pid", "connected", "stats"}`` with
  ``Endpoint.stats()`` (``pubsub_outages``, ``pubsub_refused``, ...);
* ``POST /broadcast`` with ``{"topic", "event", "payload"}``: one
  ``Endpoint.broadcast`` on this node, answered 200 ``{"ok": true}``, or 503
  ``{"error": ...}`` when it raised ``BroadcastError`` (a Redis outage).

Once serving it prints one JSON line ``{"event": "ready", "port", "node", "pid"}``
to stdout (port 0 asks the kernel for a free one, so the parent reads the port
from this line and no two nodes race for one). Logs go to stderr. SIGTERM or
SIGINT drains the endpoint (``Endpoint.stop``), prints ``{"event": "stopped"}``
and exits 0. With ``--stop-on-eof`` the end of stdin does the same, so a node
whose test process died (and never sent SIGTERM) does not outlive it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, ClassVar

from channels_actor import (
    BroadcastError,
    Channel,
    Endpoint,
    RedisPubSub,
    Socket,
    SocketHandler,
    assign,
    broadcast,
    broadcast_from,
)

#: The most sequenced broadcasts one ``publish`` push may ask for (a bound on
#: what a client can make one handle_in do).
MAX_BATCH = 10_000


class RoomChannel(Channel):
    """``rooms:*``: broadcasts what clients ask, answers who serves them.

    Events (all payloads are the client's, so they are checked only as far as a
    test needs):

    * ``broadcast`` / ``broadcast_from`` ``{"event", "body"}``: broadcast ``body``
      as ``event`` to the room, the sender included / excluded, and reply ``ok``;
    * ``publish`` ``{"event", "from", "start", "count"}``: broadcast ``count``
      messages ``{"from", "seq"}``, ``seq`` running from ``start``, one by one
      (each is its own broadcast; only the push that asks for them is batched),
      then reply ``{"published": count}``;
    * ``whoami``: reply ``{"node", "pid", "id"}``.
    """

    node: ClassVar[str] = ""

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", {"node": self.node, "pid": os.getpid()}, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        match event:
            case "broadcast":
                broadcast(socket, payload["event"], payload["body"])
                return ("reply", "ok", socket)
            case "broadcast_from":
                broadcast_from(socket, payload["event"], payload["body"])
                return ("reply", "ok", socket)
            case "publish":
                count = int(payload["count"])
                if not 0 < count <= MAX_BATCH:
                    return ("reply", ("error", {"reason": f"count must be 1..{MAX_BATCH}"}), socket)
                start, origin, name = int(payload["start"]), payload["from"], payload["event"]
                for seq in range(start, start + count):
                    broadcast(socket, name, {"from": origin, "seq": seq})
                return ("reply", ("ok", {"published": count}), socket)
            case "whoami":
                reply = {"node": self.node, "pid": os.getpid(), "id": socket.id}
                return ("reply", ("ok", reply), socket)
        return ("reply", ("error", {"unknown": event}), socket)


class ClusterSocket(SocketHandler):
    """Accepts everyone; a ``user`` param gives the socket the id ``user:<user>``."""

    channels: ClassVar[dict[str, type[Channel]]] = {"rooms:*": RoomChannel}

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        return ("ok", assign(socket, user=params.get("user")))

    def id(self, socket: Socket) -> str | None:
        user = socket.assigns.get("user")
        return f"user:{user}" if user else None


class ControlApp:
    """The WSGI ``http_app``: ``GET /stats`` and ``POST /broadcast`` (see the module)."""

    def __init__(self, endpoint: Endpoint, pubsub: RedisPubSub) -> None:
        self.endpoint = endpoint
        self.pubsub = pubsub

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if (method, path) == ("GET", "/stats"):
            return self._json(start_response, "200 OK", self._stats())
        if (method, path) == ("POST", "/broadcast"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            request = json.loads(environ["wsgi.input"].read(length))
            try:
                self.endpoint.broadcast(request["topic"], request["event"], request["payload"])
            except BroadcastError as exc:
                return self._json(start_response, "503 Service Unavailable", {"error": str(exc)})
            return self._json(start_response, "200 OK", {"ok": True})
        return self._json(start_response, "404 Not Found", {"error": f"no route {method} {path}"})

    def _stats(self) -> dict[str, Any]:
        return {
            "node": self.pubsub.node_name,
            "pid": os.getpid(),
            "connected": self.pubsub.adapter.connected,
            "stats": self.endpoint.stats(),
        }

    @staticmethod
    def _json(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
        data = json.dumps(body).encode()
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]


def _say(**line: Any) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def _stop_on_eof(stop: threading.Event) -> None:
    for _ in sys.stdin:
        pass
    stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--node", required=True, help="this node's name")
    parser.add_argument("--namespace", default="channels_actor")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backoff-max", type=float, default=5.0)
    parser.add_argument("--stop-on-eof", action="store_true", help="stop when stdin closes")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format=f"[{args.node}] %(name)s: %(message)s"
    )

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.stop_on_eof:
        threading.Thread(target=_stop_on_eof, args=(stop,), name="stdin-eof", daemon=True).start()

    pubsub = RedisPubSub(
        args.redis, args.node, namespace=args.namespace, backoff_max=args.backoff_max
    )
    endpoint = Endpoint(pubsub=pubsub)
    room = type("RoomChannel", (RoomChannel,), {"node": args.node})
    handler = type("ClusterSocket", (ClusterSocket,), {"channels": {"rooms:*": room}})
    endpoint.socket("/socket", handler)
    endpoint.http_app = ControlApp(endpoint, pubsub)
    try:
        server = endpoint.start(host="127.0.0.1", port=args.port)
        _say(event="ready", port=server.port, node=args.node, pid=os.getpid())
        stop.wait()
    finally:
        endpoint.stop()
    _say(event="stopped", node=args.node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
