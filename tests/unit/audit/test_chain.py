import dataclasses
import itertools

import pytest

from exchange.audit.events import GENESIS, AuditEvent, Chain, Happening, event_hash
from exchange.audit.verify import ChainWatch, Read, verify

KEY = b"k" * 32


def events(n: int, key: bytes | None = KEY, algorithm: str = "sha256") -> list[AuditEvent]:
    chain = Chain("router.w1", algorithm, key)  # type: ignore[arg-type]
    return [
        chain.seal(Happening("delivery.receipt", "router", 1000 + i, {"count": i}, grant_id="g"))
        for i in range(n)
    ]


def reads(evs: list[AuditEvent]) -> list[Read]:
    return [Read(f"partition 0 offset {i}", e) for i, e in enumerate(evs)]


def first_break(evs: list[AuditEvent], key: bytes | None = KEY) -> tuple[str, int | None, str]:
    report = verify(reads(evs), key).chains["router.w1"]
    assert report.broken is not None
    return report.broken.breach, report.broken.sequence, report.broken.position


def test_chain_links_and_verifies() -> None:
    evs = events(5)
    assert evs[0].prev_hash == GENESIS and evs[0].sequence == 0
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(evs))
    assert evs[0].algorithm == "hmac-sha256"
    result = verify(reads(evs), KEY)
    assert result.intact and result.events == 5
    assert result.chains["router.w1"].last_sequence == 4


@pytest.mark.parametrize("algorithm", ["sha256", "sm3"])
def test_unkeyed_chains_verify_with_either_algorithm(algorithm: str) -> None:
    evs = events(3, key=None, algorithm=algorithm)
    assert evs[0].algorithm == algorithm and len(evs[0].hash) == 64
    assert verify(reads(evs), None).intact


def test_changed_event_is_found() -> None:
    evs = events(5)
    evs[2] = dataclasses.replace(evs[2], details='{"count":99}')
    assert first_break(evs) == ("changed", 2, "partition 0 offset 2")


def test_changed_and_rehashed_event_breaks_the_next_link() -> None:
    evs = events(5, key=None)
    changed = dataclasses.replace(evs[2], details='{"count":99}')
    evs[2] = dataclasses.replace(changed, hash=event_hash(changed, None))
    assert first_break(evs, None)[:2] == ("changed", 3)


def test_dropped_event_is_found() -> None:
    evs = events(5)
    del evs[2]
    assert first_break(evs) == ("missing", 3, "partition 0 offset 2")
    assert first_break(events(3)[1:])[:2] == ("missing", 1)


def test_reordered_events_are_found() -> None:
    evs = events(5)
    evs[1], evs[3] = evs[3], evs[1]
    assert first_break(evs)[:2] == ("reordered", 3)


def test_duplicate_is_found() -> None:
    evs = events(3)
    assert first_break([*evs, evs[1]])[:2] == ("duplicated", 1)


def test_forged_events_are_found() -> None:
    evs = events(3)
    # Appended by someone without the key: a plain hash, correctly linked.
    tail = Chain("router.w1", "sha256", None, 3, evs[-1].hash)
    forged = tail.seal(Happening("delivery.receipt", "router", 5, {"count": 1}))
    assert first_break([*evs, forged])[:2] == ("forged", 3)
    # ... or with a key of its own: the HMAC does not match.
    other = Chain("router.w1", "sha256", b"x" * 32, 3, evs[-1].hash)
    assert first_break([*evs, other.seal(Happening("k", "a", 5, {}))])[:2] == ("changed", 3)
    # A second event with a sequence already used.
    fork = Chain("router.w1", "sha256", KEY, 1, evs[0].hash).seal(Happening("k", "a", 5, {}))
    assert first_break([*evs, fork])[:2] == ("forged", 1)


def test_unreadable_records_and_independent_chains() -> None:
    good = events(2)
    other = Chain("cli.gongan", "sha256", KEY).seal(Happening("grant.approved", "gongan", 1, {}))
    result = verify(
        [*reads(good), Read("partition 1 offset 0", other), Read("p 2", None, "bad")], KEY
    )
    assert not result.intact
    assert set(result.chains) == {"router.w1", "cli.gongan"}
    assert all(c.broken is None for c in result.chains.values())
    assert [u.position for u in result.unreadable] == ["p 2"]


def test_avro_round_trip_keeps_the_hash_valid() -> None:
    import datetime as dt

    ev = events(1)[0]
    record = ev.to_avro()
    record["ts_ms"] = dt.datetime.fromtimestamp(ev.ts_ms / 1000, tz=dt.UTC)
    assert AuditEvent.from_avro(record) == ev


def watch_in_pieces(evs: list[AuditEvent], cuts: list[int], key: bytes | None = KEY) -> ChainWatch:
    watch = ChainWatch(key)
    all_reads = reads(evs)
    for start, end in itertools.pairwise([0, *cuts, len(all_reads)]):
        watch.add(all_reads[start:end])
    return watch


@pytest.mark.parametrize("cuts", [[], [1], [2, 3], [1, 2, 3, 4]])
def test_watching_in_pieces_agrees_with_verifying_whole(cuts: list[int]) -> None:
    assert watch_in_pieces(events(5), cuts).result.intact
    assert watch_in_pieces(events(5), cuts).result.events == 5
    changed = events(5)
    changed[2] = dataclasses.replace(changed[2], details='{"count":99}')
    dropped = events(5)
    del dropped[3]
    tail = Chain("router.w1", "sha256", None, 5, events(5)[-1].hash)
    forged = [*events(5), tail.seal(Happening("delivery.receipt", "router", 5, {}))]
    for evs in (changed, dropped, forged):
        whole = verify(reads(evs), KEY).chains["router.w1"].broken
        piecewise = watch_in_pieces(evs, [c for c in cuts if c < len(evs)])
        assert piecewise.result.chains["router.w1"].broken == whole


def test_watch_reports_a_repeat_across_pieces_as_reordered() -> None:
    evs = events(3)
    broken = watch_in_pieces([*evs, evs[1]], [3]).result.chains["router.w1"].broken
    assert broken is not None and broken.breach == "reordered" and broken.sequence == 1
