"""The sans-IO presence state and its diff window, driven with no thread at all."""

from __future__ import annotations

import base64

import pytest

from channels_actor.presence.diffs import DiffBuffer
from channels_actor.presence.state import AlreadyTracked, PresenceState, make_ref


def test_refs_are_url_safe_base64_of_12_unique_bytes() -> None:
    refs = {make_ref() for _ in range(10_000)}
    assert len(refs) == 10_000
    for ref in list(refs)[:100]:
        assert len(base64.urlsafe_b64decode(ref)) == 12
        assert "+" not in ref and "/" not in ref


def test_track_list_and_get_by_key() -> None:
    state = PresenceState("n1")
    phone = state.track("ch1", "room", "alice", {"device": "phone"})
    laptop = state.track("ch2", "room", "alice", {"device": "laptop"})
    state.track("ch3", "room", "bob", {})
    state.track("ch1", "other", "alice", {})
    listed = state.list("room")
    assert list(listed) == ["alice", "bob"]
    assert listed["alice"] == {
        "metas": [
            {"device": "phone", "phx_ref": phone.phx_ref},
            {"device": "laptop", "phx_ref": laptop.phx_ref},
        ]
    }
    assert state.get_by_key("room", "bob")[0]["phx_ref"]
    assert state.get_by_key("room", "carol") == []
    assert state.list("nowhere") == {}
    assert (phone.tag.node, laptop.tag.clock - phone.tag.clock) == ("n1", 1)


def test_the_same_channel_topic_and_key_twice_is_refused() -> None:
    state = PresenceState("n1")
    state.track("ch1", "room", "alice", {})
    with pytest.raises(AlreadyTracked, match="update"):
        state.track("ch1", "room", "alice", {"again": True})
    assert len(state) == 1


def test_untrack_removes_the_entry_and_empty_keys() -> None:
    state = PresenceState("n1")
    entry = state.track("ch1", "room", "alice", {})
    assert state.untrack("ch1", "room", "alice") == entry
    assert state.untrack("ch1", "room", "alice") is None
    assert state.list("room") == {}
    state.track("ch1", "room", "alice", {})  # tracked again after the untrack


def test_update_gives_a_new_ref_and_the_previous_one() -> None:
    state = PresenceState("n1")
    first = state.track("ch1", "room", "alice", {"status": "away"})
    changed = state.update("ch1", "room", "alice", lambda meta: {"status": "here", "was": meta["status"]})
    assert changed is not None
    old, new = changed
    assert old == first
    assert new.meta == {
        "status": "here",
        "was": "away",
        "phx_ref": new.phx_ref,
        "phx_ref_prev": first.phx_ref,
    }
    assert new.phx_ref != first.phx_ref
    assert state.list("room") == {"alice": {"metas": [new.meta]}}
    assert state.update("ch9", "room", "alice", {}) is None


def test_an_owner_that_ends_leaves_everywhere() -> None:
    state = PresenceState("n1")
    state.track("ch1", "a", "alice", {})
    state.track("ch1", "b", "alice", {})
    kept = state.track("ch2", "a", "alice", {})
    gone = state.untrack_owner("ch1")
    assert sorted(entry.topic for entry in gone) == ["a", "b"]
    assert state.list("a") == {"alice": {"metas": [kept.meta]}}
    assert state.list("b") == {}
    assert state.untrack_owner("ch1") == []
    assert len(state) == 1


def test_a_diff_groups_metas_by_key_per_topic() -> None:
    state, diffs = PresenceState("n1"), DiffBuffer()
    a = state.track("ch1", "room", "alice", {})
    b = state.track("ch2", "room", "alice", {})
    c = state.track("ch3", "hall", "bob", {})
    diffs.add(joined=(a, b, c))
    assert diffs.take() == [
        ("room", {"alice": {"metas": [a.meta, b.meta]}}, {}),
        ("hall", {"bob": {"metas": [c.meta]}}, {}),
    ]
    assert not diffs
    assert diffs.take() == []


def test_a_join_and_its_leave_in_one_window_cancel_out() -> None:
    state, diffs = PresenceState("n1"), DiffBuffer()
    entry = state.track("ch1", "room", "alice", {})
    diffs.add(joined=(entry,))
    diffs.add(left=(state.untrack("ch1", "room", "alice"),))  # type: ignore[arg-type]
    assert not diffs
    assert diffs.take() == []


def test_an_update_is_a_leave_of_the_old_meta_and_a_join_of_the_new() -> None:
    state, diffs = PresenceState("n1"), DiffBuffer()
    first = state.track("ch1", "room", "alice", {"n": 1})
    diffs.add(joined=(first,))
    diffs.take()
    changed = state.update("ch1", "room", "alice", {"n": 2})
    assert changed is not None
    old, new = changed
    diffs.add(joined=(new,), left=(old,))
    assert diffs.take() == [
        ("room", {"alice": {"metas": [new.meta]}}, {"alice": {"metas": [first.meta]}})
    ]
    # tracked and updated within one window: only the final meta joins
    second = state.track("ch2", "room", "bob", {"n": 1})
    diffs.add(joined=(second,))
    changed = state.update("ch2", "room", "bob", {"n": 2})
    assert changed is not None
    diffs.add(joined=(changed[1],), left=(changed[0],))
    assert diffs.take() == [("room", {"bob": {"metas": [changed[1].meta]}}, {})]


def test_a_thousand_joins_in_one_window_are_one_diff() -> None:
    state, diffs = PresenceState("n1"), DiffBuffer()
    for number in range(1000):
        diffs.add(joined=(state.track(f"ch{number}", "room", f"user{number}", {}),))
    [(topic, joins, leaves)] = diffs.take()
    assert (topic, len(joins), leaves) == ("room", 1000, {})
