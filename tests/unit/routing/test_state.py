"""The per-key routing state (``kernel/src/state.rs``) and its rule per grant, without Kafka."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.routing.state import KeyState, grant_action, record_hash, slot_of

COUNTY, CITY = slot_of("shuocheng-population"), slot_of("sz-population")


def _change(state: KeyState, key: bytes, event: bytes, county: bool, record: int) -> dict[int, str]:
    """One accepted record routed to a county grant (filter ``county``) and a city grant."""
    batch = state.begin()
    actions = batch.change(key, event, [(COUNTY, county, record), (CITY, True, record)])
    assert batch.end() is not None
    return dict(actions)


def _delete(state: KeyState, key: bytes, event: bytes) -> dict[int, str]:
    batch = state.begin()
    actions = batch.change(key, event, [(COUNTY, False, 0), (CITY, False, 0)], delete=True)
    assert batch.end() is not None
    return dict(actions)


def test_a_row_moving_out_of_a_grants_filter_is_a_delete_for_it_and_moving_in_a_create() -> None:
    state = KeyState()
    key = b"140602199001011234"
    assert _change(state, key, b"e1", county=True, record=1) == {COUNTY: "c", CITY: "c"}
    assert _change(state, key, b"e2", county=False, record=2) == {COUNTY: "d", CITY: "u"}
    assert _change(state, key, b"e3", county=False, record=3) == {COUNTY: "skip", CITY: "u"}
    assert _change(state, key, b"e4", county=True, record=4) == {COUNTY: "c", CITY: "u"}


def test_a_delete_reaches_only_the_grants_that_held_the_key() -> None:
    state = KeyState()
    outside = b"140603199001011234"
    _change(state, outside, b"e1", county=False, record=1)
    assert _delete(state, outside, b"e2") == {COUNTY: "skip", CITY: "d"}
    assert state.row(outside) is None
    # A delete of a key the exchange never accepted (rejected at the router) reaches nobody.
    assert _delete(state, b"never-accepted", b"e3") == {COUNTY: "skip", CITY: "skip"}


def test_an_update_that_changes_nothing_a_grant_sees_is_not_delivered_to_it() -> None:
    state = KeyState()
    key = b"k"
    batch = state.begin()
    batch.change(key, b"e1", [(COUNTY, True, 7), (CITY, True, 8)])
    assert dict(batch.change(key, b"e2", [(COUNTY, True, 7), (CITY, True, 9)])) == {
        COUNTY: "skip",
        CITY: "u",
    }
    batch.end()
    assert state.row(key) == (_version(b"e2"), sorted([(COUNTY, 7), (CITY, 9)]))


def test_a_key_no_grant_holds_stays_live_with_its_version() -> None:
    state = KeyState()
    batch = state.begin()
    batch.change(b"k", b"e1", [(COUNTY, False, 1)])
    batch.end()
    assert state.row(b"k") == (_version(b"e1"), [])


def test_batches_read_through_pending_ones_and_commit_in_order() -> None:
    state = KeyState()
    first, second = state.begin(), state.begin()
    first.change(b"k", b"e1", [(CITY, True, 1)])
    seq1 = first.end()
    # The second batch began before the first ended, but reads what the first left.
    assert dict(second.change(b"k", b"e2", [(CITY, True, 2)])) == {CITY: "u"}
    seq2 = second.end()
    assert seq1 is not None and seq2 is not None and seq2 > seq1
    assert state.sizes() == (0, 2)
    state.commit(seq1)
    assert state.sizes() == (1, 1)
    assert state.committed_rows() == [(KeyState.digest(b"k"), _row(b"e1", [(CITY, 1)]))]
    state.commit(seq2)
    assert state.sizes() == (1, 0)
    assert state.row(b"k") == (_version(b"e2"), [(CITY, 2)])


def test_a_rewind_forgets_pending_batches_and_refuses_those_begun_before_it() -> None:
    state = KeyState()
    batch = state.begin()
    batch.change(b"k", b"e1", [(CITY, True, 1)])
    state.commit(batch.end() or 0)
    pending, late = state.begin(), state.begin()
    pending.change(b"k", b"e2", [(CITY, True, 2)])
    assert pending.end() is not None
    late.change(b"k", b"e3", [(CITY, True, 3)])
    state.rewind()
    assert late.end() is None  # routed against forgotten changes: dropped
    assert state.sizes() == (1, 0)
    assert state.row(b"k") == (_version(b"e1"), [(CITY, 1)])
    with pytest.raises(ValueError, match="ended"):
        late.change(b"k", b"e4", [])


def test_restore_reads_changelog_records_in_order_and_refuses_what_is_not_a_row() -> None:
    state = KeyState()
    d = KeyState.digest(b"k")
    state.restore([(d, _row(b"e1", [(CITY, 1)])), (KeyState.digest(b"x"), None)])
    state.restore([(d, _row(b"e2", [(CITY, 2), (COUNTY, 2)]))])
    assert state.row(b"k") == (_version(b"e2"), sorted([(CITY, 2), (COUNTY, 2)]))
    state.restore([(d, None)])
    assert state.row(b"k") is None
    with pytest.raises(ValueError, match="record 0: a key digest is 16 bytes"):
        state.restore([(b"short", None)])
    with pytest.raises(ValueError, match="record 1: not a state row"):
        state.restore([(d, None), (d, b"123")])


def test_slots_and_digests_are_stable() -> None:
    assert slot_of("g") == slot_of("g") != slot_of("h")
    assert KeyState.digest(b"k") == hashlib.sha256(b"k").digest()[:16]
    assert record_hash(b"x") == record_hash(b"x") != record_hash(b"y")


@given(
    st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 3)), min_size=1, max_size=30)
)
def test_the_kernel_and_the_python_rule_agree(steps: list[tuple[bool, bool, int]]) -> None:
    state = KeyState()
    held: int | None = None
    for n, (delete, passes, record) in enumerate(steps):
        batch = state.begin()
        (got,) = batch.change(b"k", b"e%d" % n, [(CITY, passes, record)], delete=delete)
        batch.end()
        expected, held = grant_action(held, passes, None if delete else record)
        assert got == (CITY, expected)
        row = state.row(b"k")
        holding = None if row is None else dict(row[1]).get(CITY)
        assert holding == held


def test_many_grants_keep_their_holdings_apart() -> None:
    state = KeyState()
    slots = [slot_of(f"g{i}") for i in range(20)]
    batch = state.begin()
    for i, slot in enumerate(slots):
        batch.change(b"k", b"e", [(slot, i % 2 == 0, i)])
    batch.end()
    row = state.row(b"k")
    assert row is not None
    assert dict(row[1]) == {s: i for i, s in enumerate(slots) if i % 2 == 0}
    assert [s for s, _ in row[1]] == sorted(s for s, _ in row[1])
    assert list(itertools.pairwise(s for s, _ in row[1]))  # more than one holder


def _version(event_id: bytes) -> int:
    return int.from_bytes(hashlib.sha256(event_id).digest()[:8], "little")


def _row(event_id: bytes, pairs: list[tuple[int, int]]) -> bytes:
    out = _version(event_id).to_bytes(8, "little")
    for slot, value in sorted(pairs):
        out += slot.to_bytes(8, "little") + value.to_bytes(8, "little")
    return out


def test_holdings_of_grants_no_longer_there_go_when_the_key_next_changes() -> None:
    state = KeyState()
    ended = slot_of("revoked-grant")
    made = state.begin()
    made.change(b"k", b"e1", [(ended, True, 1), (CITY, True, 1)])
    made.change(b"k", b"e2", [(CITY, True, 2)], keep=[CITY, COUNTY])
    state.commit(made.end() or 0)
    assert state.row(b"k") == (_version(b"e2"), [(CITY, 2)])
