"""Topic routing, assign, configuration errors and the public exports."""

from __future__ import annotations

from typing import Any

import pytest

import channels_actor
from channels_actor import Channel, ConfigurationError, Endpoint, Socket, SocketHandler, assign


class A(Channel):
    def join(self, topic: str, payload: Any, socket: Socket) -> Any:
        return ("ok", socket)


class B(A):
    pass


class C(A):
    pass


def test_exact_beats_prefix_and_longest_prefix_wins() -> None:
    class H(SocketHandler):
        channels = {"room:*": A, "room:vip:*": B, "room:vip:1": C, "*": B}

    h = H()
    assert h.channel_for("room:vip:1") is C
    assert h.channel_for("room:vip:2") is B
    assert h.channel_for("room:x") is A
    assert h.channel_for("other") is B


def test_no_route() -> None:
    class H(SocketHandler):
        channels = {"room:lobby": A}

    assert H().channel_for("room:lobbyx") is None
    assert SocketHandler().channel_for("x") is None


@pytest.mark.parametrize("channels", [{"room:*:x": A}, {"room": object}, {5: A}])
def test_bad_routes_fail_when_the_class_is_defined(channels: dict[Any, Any]) -> None:
    with pytest.raises(ConfigurationError):
        type("H", (SocketHandler,), {"channels": channels})


def test_assign_returns_a_new_socket() -> None:
    s = Socket(assigns={"a": 1})
    t = assign(s, "b", 2)
    u = assign(t, c=3, a=0)
    assert s.assigns == {"a": 1} and t.assigns == {"a": 1, "b": 2} and u.assigns == {"a": 0, "b": 2, "c": 3}
    with pytest.raises(TypeError, match="needs a key"):
        assign(s)


def test_endpoint_config_errors_name_the_options() -> None:
    with pytest.raises(ConfigurationError, match="Unknown Endpoint option.*max_frame_sise.*max_frame_size"):
        Endpoint(max_frame_sise=10)
    with pytest.raises(ConfigurationError, match="pool_size must be a positive int"):
        Endpoint(pool_size=0)
    with pytest.raises(ConfigurationError, match="actor_mode must be one of"):
        Endpoint(actor_mode="greenlet")
    with pytest.raises(ConfigurationError, match="check_origin"):
        Endpoint(check_origin="yes")
    with pytest.raises(ConfigurationError, match="SocketHandler subclass"):
        Endpoint().socket("/socket", A)  # type: ignore[arg-type]


def test_endpoint_defaults() -> None:
    config = Endpoint().config
    assert config.max_frame_size == 8 * 1024 * 1024
    assert config.heartbeat_timeout == 60.0
    assert config.max_channels_per_socket == 100
    assert config.actor_mode == "pool"


@pytest.mark.parametrize("name", channels_actor.__all__)
def test_every_export_imports_and_is_documented(name: str) -> None:
    value = getattr(channels_actor, name)
    if name != "__version__":
        assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_py_typed_is_shipped() -> None:
    from pathlib import Path

    assert (Path(channels_actor.__file__).parent / "py.typed").exists()
