"""A test application exercising every callback form; records into ``assigns["events"]``."""

from __future__ import annotations

import threading
from typing import Any

from channels_actor import (
    Channel,
    ChannelError,
    Socket,
    SocketHandler,
    assign,
    broadcast,
    broadcast_from,
    push,
    reply,
    send_after,
    socket_ref,
)


class RoomChannel(Channel):
    intercept = ["user:joined", "filtered"]

    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        events = socket.assigns.get("events")
        if events is not None:
            events.add("join", topic, threading.current_thread().name)
        mode = payload.get("mode")
        if mode == "refuse":
            return ("error", {"reason": "unauthorized"})
        if mode == "refuse_badly":
            return ("error", {"reason": object()})
        if mode == "raise":
            raise RuntimeError("join blew up")
        if mode == "garbage":
            return ("okay", socket)
        if mode == "push_in_join":
            push(socket, "early", {})
            return ("ok", socket)
        if mode == "after_join":
            socket.channel_ref.tell("after_join")  # type: ignore[union-attr]
        if mode == "reply":
            return ("ok", {"room": topic.split(":", 1)[1]}, assign(socket, "room", topic))
        return ("ok", assign(socket, "room", topic))

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        events = socket.assigns.get("events")
        if events is not None:
            events.add("in", event, payload)
        match event:
            case "noreply":
                return ("noreply", socket)
            case "reply_ok":
                return ("reply", "ok", socket)
            case "reply_map":
                return ("reply", ("ok", {"echo": payload}), socket)
            case "reply_custom":
                return ("reply", ("teapot", {"short": True}), socket)
            case "echo":
                return ("reply", ("ok", payload if isinstance(payload, bytes) else {"echo": payload}), socket)
            case "reply_binary":
                return ("reply", ("ok", b"\x00\x01"), socket)
            case "reply_error":
                return ("reply", "error", socket)
            case "assign":
                return ("reply", "ok", assign(socket, **payload))
            case "get_assign":
                return ("reply", ("ok", {"value": socket.assigns.get(payload["key"])}), socket)
            case "broadcast":
                broadcast(socket, payload["event"], payload["body"])
                return ("noreply", socket)
            case "broadcast_from":
                broadcast_from(socket, payload["event"], payload["body"])
                return ("noreply", socket)
            case "broadcast_bad":
                try:
                    broadcast(socket, "bad", {"obj": object()})
                except ChannelError as exc:
                    return ("reply", ("error", {"error": type(exc).__name__, "msg": str(exc)}), socket)
                return ("reply", "ok", socket)
            case "push_bad":
                try:
                    push(socket, "bad", [1, 2])  # type: ignore[arg-type]
                except ChannelError as exc:
                    return ("reply", ("error", {"error": type(exc).__name__, "msg": str(exc)}), socket)
                return ("reply", "ok", socket)
            case "push":
                push(socket, payload["event"], payload["body"])
                return ("noreply", socket)
            case "push_binary":
                push(socket, "bin", b"\xff\x00")
                return ("noreply", socket)
            case "stop_normal":
                return ("stop", "normal", socket)
            case "stop_shutdown_tuple":
                return ("stop", ("shutdown", "bye"), socket)
            case "stop_custom":
                return ("stop", "weird", socket)
            case "stop_with_reply":
                return ("stop", "normal", ("ok", {"bye": True}), socket)
            case "raise":
                raise ValueError("handle_in blew up")
            case "garbage":
                return ("norply", socket)
            case "bad_reply":
                return ("reply", ("ok", [1, 2]), socket)
            case "tell_self":
                socket.channel_ref.tell(("info", payload))  # type: ignore[union-attr]
                return ("noreply", socket)
            case "send_after":
                send_after(socket.channel_ref, ("info", payload), payload.get("seconds", 0.01))  # type: ignore[arg-type]
                return ("noreply", socket)
            case "later":
                ref = socket_ref(socket)
                threading.Thread(target=reply, args=(ref, ("ok", {"later": True}))).start()
                return ("noreply", socket)
            case "block":
                payload_event = socket.assigns["gate"]
                payload_event.wait(5)
                return ("reply", "ok", socket)
        return ("reply", ("error", {"unknown": event}), socket)

    def handle_out(self, event: str, payload: Any, socket: Socket) -> Any:
        events = socket.assigns.get("events")
        if events is not None:
            events.add("out", event, dict(payload) if isinstance(payload, dict) else payload)
        if event == "filtered":
            if payload.get("skip") == socket.assigns.get("name"):
                return ("noreply", socket)
            payload["seen_by"] = socket.assigns.get("name")
            push(socket, event, payload)
            return ("noreply", socket)
        if payload.get("stop"):
            return ("stop", "shutdown", socket)
        if payload.get("raise"):
            raise KeyError("handle_out blew up")
        if payload.get("garbage"):
            return ("ok", socket)
        return super().handle_out(event, payload, socket)

    def handle_info(self, message: Any, socket: Socket) -> Any:
        events = socket.assigns.get("events")
        if events is not None:
            events.add("info", message)
        if message == "after_join":
            push(socket, "welcome", {"room": socket.assigns["room"]})
            return ("noreply", socket)
        if isinstance(message, tuple) and message[0] == "info":
            body = message[1]
            if body.get("stop"):
                return ("stop", body["stop"], socket)
            if body.get("raise"):
                raise RuntimeError("handle_info blew up")
            if body.get("garbage"):
                return None
            push(socket, "info", body)
            return ("noreply", socket)
        return super().handle_info(message, socket)

    def terminate(self, reason: Any, socket: Socket) -> None:
        events = socket.assigns.get("events")
        if events is not None:
            events.add("terminate", socket.topic, reason, threading.current_thread().name)
        if socket.assigns.get("push_in_terminate"):
            push(socket, "goodbye", {})


class LobbyChannel(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", {"lobby": True}, socket)

    def handle_in(self, event: str, payload: Any, socket: Socket) -> Any:
        return ("reply", ("ok", {"channel": "lobby"}), socket)


class NoJoinChannel(Channel):
    pass


class UserSocket(SocketHandler):
    channels = {
        "rooms:lobby": LobbyChannel,
        "rooms:*": RoomChannel,
        "rooms:special:*": LobbyChannel,
        "nojoin": NoJoinChannel,
    }

    def connect(self, params: dict[str, Any], socket: Socket, connect_info: dict[str, Any]) -> Any:
        if params.get("token") == "bad":
            return "error"
        if params.get("token") == "bad_map":
            return ("error", {"reason": "nope"})
        if params.get("token") == "garbage":
            return 42
        return ("ok", assign(socket, user_id=params.get("user_id"), events=params.get("events")))

    def id(self, socket: Socket) -> str | None:
        user = socket.assigns.get("user_id")
        return f"users_socket:{user}" if user is not None else None
