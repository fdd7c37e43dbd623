"""The apps that ``channels-actor serve`` loads in ``test_serve.py``.

What the test cannot see from outside (which worker a client landed on, that
``terminate`` ran) the app makes visible: the join reply carries the worker's
pid, and every ``terminate`` appends a line to the file named by the
``SERVE_TEST_RECORD`` environment variable.
"""

from __future__ import annotations

import os
import threading
from typing import Any, ClassVar

from channels_actor import Channel, Endpoint, RedisPubSub, Socket, SocketHandler, broadcast

#: Never set: a thread waiting on it keeps a worker's interpreter from exiting.
_NEVER = threading.Event()


def record(line: str) -> None:
    with open(os.environ["SERVE_TEST_RECORD"], "a") as file:
        file.write(line + "\n")


class RoomChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        if topic == "rooms:hang":  # a worker that drains, then cannot exit
            threading.Thread(target=_NEVER.wait, name="hangs-at-exit", daemon=False).start()
        return ("ok", {"pid": os.getpid()}, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "shout":
            broadcast(socket, "shout", {**payload, "from": os.getpid()})
            return ("reply", "ok", socket)
        return ("reply", "error", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        record(f"terminate {os.getpid()} {socket.topic} {reason!r}")


class UserSocket(SocketHandler):
    channels: ClassVar = {"rooms:*": RoomChannel}


def build(**options: Any) -> Endpoint:
    endpoint = Endpoint(**options)
    endpoint.socket("/socket", UserSocket)
    return endpoint


endpoint = build()
wsgi = endpoint.wsgi_app  # what gunicorn would be given; serve wants the Endpoint


def redis_endpoint() -> Endpoint:
    """A node of the cluster on the Redis that ``SERVE_TEST_REDIS_URL`` names."""
    return build(pubsub=RedisPubSub(os.environ["SERVE_TEST_REDIS_URL"]))


def fails_in_workers() -> Endpoint:
    """Loads in the first process that calls it (the parent) and raises in every later one."""
    with open(os.environ["SERVE_TEST_RECORD"], "a+") as file:
        file.seek(0)
        loads = file.read().count("load\n")
        file.write("load\n")
    if loads:
        raise RuntimeError("this app fails in every worker")
    return build()
