"""A Flask app with the endpoint mounted the usual Flask way (``flask --app ... run``).

werkzeug's ``DispatcherMiddleware`` mounts the endpoint twice: at ``/socket``,
the path phoenix.js is given (so ``SCRIPT_NAME`` is ``/socket`` and
``PATH_INFO`` is ``/websocket``), and under ``/chat`` (``/chat/socket/websocket``).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from tests.deploy.app import endpoint

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "flask page"


app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
    app.wsgi_app, {"/socket": endpoint.wsgi_app, "/chat": endpoint.wsgi_app}
)
