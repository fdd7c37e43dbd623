"""The app the deployment tests serve under gunicorn (``tests.deploy.app:app``).

Every line the tests wait for goes to stderr: the app's log (``ready``) and,
from each channel's ``terminate``, a ``TERMINATE`` line. With
``CHANNELS_ACTOR_TEST_REDIS`` set, the endpoint's PubSub is a ``RedisPubSub``
on that URL (in ``CHANNELS_ACTOR_TEST_NAMESPACE``), so every worker of one
gunicorn is a node of one cluster.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from channels_actor import Channel, Endpoint, RedisPubSub, Socket, SocketHandler, broadcast

logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
)
log = logging.getLogger("tests.deploy")


class RoomChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", {"pid": os.getpid()}, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        if event == "shout":
            broadcast(socket, "shout", payload)
        return ("noreply", socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        print(f"TERMINATE pid={os.getpid()} {socket.topic} {reason!r}", file=sys.stderr, flush=True)


class UserSocket(SocketHandler):
    channels = {"rooms:*": RoomChannel}


def make_endpoint() -> Endpoint:
    url = os.environ.get("CHANNELS_ACTOR_TEST_REDIS")
    namespace = os.environ.get("CHANNELS_ACTOR_TEST_NAMESPACE", "channels_actor")
    endpoint = Endpoint(pubsub=RedisPubSub(url, namespace=namespace) if url else None)
    endpoint.socket("/socket", UserSocket)
    return endpoint


endpoint = make_endpoint()


def _page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"pid={os.getpid()}".encode()]


endpoint.http_app = _page
app = endpoint.wsgi_app
log.info("app ready in pid=%d", os.getpid())
