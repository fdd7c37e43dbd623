"""The WSGI app gunicorn loads in the embedding test (``gunicorn tests.integration.gunicorn_app:app``)."""

from __future__ import annotations

from typing import Any

from channels_actor import Endpoint
from tests.channels.app import UserSocket

endpoint = Endpoint()
endpoint.socket("/socket", UserSocket)


def _page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain http through gunicorn"]


endpoint.http_app = _page
app = endpoint.wsgi_app
