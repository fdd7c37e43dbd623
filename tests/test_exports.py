"""The public API does not change shape under a restructuring.

The names importable from ``channels_actor`` and the signatures of what users
call are compared with a snapshot. A change here is a change of the contract
in ``API.md``: update the snapshot only on purpose.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib

import channels_actor
from channels_actor import testing

# name -> signature (callables) or the names of the public methods (classes)
EXPECTED_NAMES = {
    "AlreadyTracked",
    "Broadcast",
    "BroadcastError",
    "CallbackReturnError",
    "Channel",
    "ChannelError",
    "ChannelTimeout",
    "ChannelsError",
    "ConfigurationError",
    "Endpoint",
    "InvalidMessageError",
    "Message",
    "PubSub",
    "Presence",
    "RedisPubSub",
    "Reply",
    "Socket",
    "SocketHandler",
    "SocketRef",
    "TimerHandle",
    "Token",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "TokenMissing",
    "__version__",
    "assign",
    "broadcast",
    "broadcast_from",
    "push",
    "reply",
    "send_after",
    "socket_ref",
}

FUNCTIONS = {
    "assign": "(socket, key=None, value=None, /, **pairs)",
    "broadcast": "(socket, event, message)",
    "broadcast_from": "(socket, event, message)",
    "push": "(socket, event, message)",
    "reply": "(ref, status_or_reply)",
    "send_after": "(ref, message, seconds)",
    "socket_ref": "(socket)",
}

METHODS = {
    "Channel": {
        "join": "(self, topic, payload, socket)",
        "handle_in": "(self, event, payload, socket)",
        "handle_out": "(self, event, payload, socket)",
        "handle_info": "(self, message, socket)",
        "terminate": "(self, reason, socket)",
    },
    "SocketHandler": {
        "connect": "(self, params, socket, connect_info)",
        "id": "(self, socket)",
        "channel_for": "(self, topic)",
    },
    "Endpoint": {
        "__init__": "(self, pubsub=None, **config)",
        "socket": "(self, path, handler_class, **options)",
        "broadcast": "(self, topic, event, message)",
        "broadcast_from": "(self, from_ref, topic, event, message)",
        "local_broadcast": "(self, topic, event, message)",
        "subscribe": "(self, topic, callback)",
        "unsubscribe": "(self, topic, callback)",
        "start": "(self, host='127.0.0.1', port=4000, *, backlog=1024, reuse_port=False)",
        "serve": "(self, host='127.0.0.1', port=4000)",
        "wsgi_app": "(self, environ, start_response)",
        "start_runtime": "(self)",
        "stop": "(self, timeout=None)",
        "stats": "(self)",
        "channel_count": "(self, timeout=5.0)",
        "attach": "(self, service)",
        "sign_token": "(self, salt, data, **opts)",
        "verify_token": "(self, salt, token, **opts)",
    },
    "Token": {
        "sign": "(secret_key_base, salt, data, max_age=86400, signed_at=None)",
        "verify": "(secret_key_base, salt, token, max_age=<max_age from the token>)",
    },
    "PubSub": {
        "broadcast": "(self, topic, event, message)",
        "broadcast_from": "(self, from_key, topic, event, message)",
        "local_broadcast": "(self, topic, event, message)",
        "local_broadcast_from": "(self, from_key, topic, event, message)",
        "direct_broadcast": "(self, node_name, topic, event, message)",
        "subscribe_callback": "(self, topic, callback)",
        "unsubscribe": "(self, topic, key)",
        "start": "(self)",
        "stop": "(self, timeout=5.0)",
        "stats": "(self, timeout=5.0)",
    },
    "Presence": {
        "__init__": "(self, endpoint, *, broadcast_period=0.02, timeout=5.0)",
        "track": "(self, owner, *args)",
        "untrack": "(self, owner, *args)",
        "update": "(self, owner, *args)",
        "list": "(self, topic)",
        "get_by_key": "(self, topic, key)",
        "fetch": "(self, topic, presences)",
        "channel_exited": "(self, ref)",
        "stop": "(self, timeout=5.0)",
    },
}

# channels_actor.testing (Phoenix.ChannelTest): its names, and the signatures of its functions
TESTING_FUNCTIONS = {
    "assert_broadcast": "(event, payload=None, timeout=1.0)",
    "assert_presence_diff": "(joins=None, leaves=None, timeout=1.0, *, socket=None)",
    "assert_presence_state": "(state=None, timeout=1.0, *, socket=None)",
    "assert_push": "(event, payload=None, timeout=1.0, *, socket=None)",
    "assert_reply": "(ref, status, payload=None, timeout=1.0)",
    "assert_terminated": "(socket, timeout=1.0)",
    "broadcast_from": "(socket, event, payload)",
    "close": "(socket, timeout=5.0)",
    "connect": "(handler, params=None, connect_info=None, *, endpoint=None)",
    "default_endpoint": "()",
    "join": "(socket, topic_or_channel, topic_or_payload=None, payload=None, *, timeout=1.0)",
    "leave": "(socket)",
    "mailbox": "()",
    "push": "(socket, event, payload=None)",
    "refute_broadcast": "(event, payload=None, timeout=0.1)",
    "refute_push": "(event, payload=None, timeout=0.1, *, socket=None)",
    "refute_reply": "(ref, status=None, timeout=0.1)",
    "socket": "(handler, id=None, assigns=None, *, endpoint=None)",
    "stop_default_endpoint": "()",
    "subscribe_and_join": (
        "(socket, topic_or_channel, topic_or_payload=None, payload=None, *, timeout=1.0)"
    ),
}
TESTING_NAMES = {"ANY", "Exact", "Mailbox", *TESTING_FUNCTIONS}

SOCKET_FIELDS = (
    "topic",
    "assigns",
    "join_ref",
    "joined",
    "endpoint",
    "handler",
    "id",
    "transport",
    "serializer",
    "pubsub",
    "channel_ref",
    "ref",
    "connection",
)


def test_top_level_names_are_the_contract() -> None:
    assert set(channels_actor.__all__) == EXPECTED_NAMES
    for name in EXPECTED_NAMES:
        assert hasattr(channels_actor, name), name


def _params(obj: object) -> str:
    signature = inspect.signature(obj)  # type: ignore[arg-type]
    return str(
        signature.replace(
            return_annotation=inspect.Signature.empty,
            parameters=[
                p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
            ],
        )
    )


def test_function_signatures() -> None:
    for name, expected in FUNCTIONS.items():
        assert _params(getattr(channels_actor, name)) == expected, name


def test_method_signatures() -> None:
    for cls_name, methods in METHODS.items():
        cls = getattr(channels_actor, cls_name)
        for method, expected in methods.items():
            assert _params(getattr(cls, method)) == expected, f"{cls_name}.{method}"


def test_testing_kit_names_and_signatures() -> None:
    assert set(testing.__all__) == TESTING_NAMES
    for name, expected in TESTING_FUNCTIONS.items():
        assert _params(getattr(testing, name)) == expected, name


def test_socket_fields_and_immutability() -> None:
    socket = channels_actor.Socket()
    assert tuple(f.name for f in dataclasses.fields(socket)) == SOCKET_FIELDS
    try:
        socket.topic = "x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("Socket must stay immutable")


def test_py_typed_is_shipped() -> None:
    assert (pathlib.Path(channels_actor.__file__).parent / "py.typed").is_file()
