"""Checking audit chains: every event in place, unchanged, sealed by a key holder, and signed
by the principal allowed to write its chain (when keys are registered: ``audit/signing.py``).

Pure: takes the events as read (with where each was read) and reports, per chain, the first
broken link. What a hash chain cannot show by itself: events cut off the *end* of a chain. The
verifier reports each chain's last sequence so an operator can compare it with what the writer
last reported (the router exports it as a metric).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from exchange.audit.events import ALGORITHMS, GENESIS, AuditEvent, event_hash
from exchange.audit.signing import KeyBook

#: No keys registered: signatures are not asked for (open mode).
NO_KEYS = KeyBook({}, {})

Breach = Literal["changed", "missing", "reordered", "duplicated", "forged", "unreadable"]


@dataclass(frozen=True)
class Read:
    """One record of the audit topic: where it was, and the event or why it is not one."""

    position: str  # "partition 1 offset 42"
    event: AuditEvent | None
    error: str = ""
    #: The broker's time of the record (LogAppendTime topics), which no writer chooses.
    appended_ms: int | None = None

    @property
    def at_ms(self) -> int:
        """When the event was written, as far as this read can tell: the broker's time, else
        the writer's own ``ts_ms``."""
        if self.appended_ms is not None or self.event is None:
            return self.appended_ms or 0
        return self.event.ts_ms


@dataclass(frozen=True)
class BrokenLink:
    breach: Breach
    position: str
    sequence: int | None
    message: str


@dataclass
class ChainReport:
    chain_id: str
    events: int = 0
    last_sequence: int | None = None
    last_hash: str = GENESIS
    broken: BrokenLink | None = None
    #: When the newest key this chain was signed with was registered: a chain never goes back
    #: to an older key (one retired and perhaps stolen) once it signed with a newer one.
    key_added_ms: int = -1
    #: Once a chain has a signed event, every later one must be signed too.
    signed: bool = False


@dataclass
class Verification:
    chains: dict[str, ChainReport] = field(default_factory=dict)
    #: Records that are not audit events at all (not attributable to any chain).
    unreadable: list[BrokenLink] = field(default_factory=list)
    #: Events whose time only their writer vouched for (the topic does not stamp records with
    #: the broker's time): key validity was judged by a time a forger could choose.
    writer_timed: int = 0
    #: Whether signatures were checked at all (keys are registered).
    signatures_checked: bool = False

    @property
    def intact(self) -> bool:
        return not self.unreadable and all(c.broken is None for c in self.chains.values())

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chains.values())


def verify(reads: Iterable[Read], key: bytes | None, keys: KeyBook = NO_KEYS) -> Verification:
    """Check every chain in the order its events were read (one chain lives in one partition).

    ``key``: the HMAC key, if events are sealed with one; ``keys``: the register of public keys
    and who writes which chain."""
    result = Verification(signatures_checked=not keys.empty)
    by_chain: dict[str, list[Read]] = {}
    for read in reads:
        if read.event is None:
            result.unreadable.append(_unreadable(read))
            continue
        result.writer_timed += read.appended_ms is None
        by_chain.setdefault(read.event.chain_id, []).append(read)
    for chain_id, events in by_chain.items():
        result.chains[chain_id] = _verify_chain(chain_id, events, key, keys)
    return result


def _unreadable(read: Read) -> BrokenLink:
    return BrokenLink("unreadable", read.position, None, read.error or "not an audit event")


def _verify_chain(
    chain_id: str, reads: list[Read], key: bytes | None, keys: KeyBook
) -> ChainReport:
    report = ChainReport(chain_id)
    sequences = {r.event.sequence for r in reads if r.event is not None}
    seen: dict[int, str] = {}
    for read in reads:
        if not _advance(report, read, (key, keys), seen, sequences):
            break
    return report


def _advance(
    report: ChainReport,
    read: Read,
    trust: tuple[bytes | None, KeyBook],
    seen: dict[int, str],
    sequences: set[int],
) -> bool:
    """Check the chain's next event; ``False`` (and ``report.broken`` set) when it breaks it."""
    event, position = read.event, read.position
    assert event is not None, "unreadable records belong to no chain"
    report.events += 1
    expected = 0 if report.last_sequence is None else report.last_sequence + 1
    key, keys = trust
    broken = _check(event, expected, report.last_hash, seen, sequences, key, position)
    if broken is None:
        broken = _check_signer(report, read, keys)
    if broken is not None:
        report.broken = broken
        return False
    seen[event.sequence] = event.hash
    report.last_sequence = event.sequence
    report.last_hash = event.hash
    return True


class ChainWatch:
    """Verifies the trail as it grows, keeping per chain only its last link (for the monitor).

    Reports the same breaches as :func:`verify`, except that a repeat of an earlier event is
    reported as ``reordered`` (telling a duplicate from a forgery needs every hash kept; the
    full ``exchange audit verify`` tells them apart).
    """

    def __init__(self, key: bytes | None, keys: KeyBook = NO_KEYS) -> None:
        self.key = key
        self.keys = keys
        self.result = Verification(signatures_checked=not keys.empty)

    def add(self, reads: Iterable[Read]) -> None:
        # The monitor may have re-read the register since the last batch.
        self.result.signatures_checked = not self.keys.empty
        batch = list(reads)
        sequences: dict[str, set[int]] = {}
        for read in batch:
            if read.event is not None:
                sequences.setdefault(read.event.chain_id, set()).add(read.event.sequence)
        for read in batch:
            if read.event is None:
                self.result.unreadable.append(_unreadable(read))
                continue
            self.result.writer_timed += read.appended_ms is None
            chain_id = read.event.chain_id
            report = self.result.chains.setdefault(chain_id, ChainReport(chain_id))
            if report.broken is None:
                trust = (self.key, self.keys)
                _advance(report, read, trust, {}, sequences[chain_id])


def _check_signer(report: ChainReport, read: Read, keys: KeyBook) -> BrokenLink | None:
    """Whether the chain's writer signed the event (with a key no older than before, and
    without going back to unsigned events once it signed)."""
    event = read.event
    assert event is not None
    problem = keys.problem(event.chain_id, read.at_ms, event.hash, event.signer, event.signature)
    if problem is None and not keys.empty:
        if event.signature is None and report.signed:
            problem = "not signed, after signed events of the same chain"
        elif event.signer is not None and event.signer in keys.keys:
            added = keys.keys[event.signer].added_ms
            if added < report.key_added_ms:
                problem = f"signed with key {event.signer}, older than one it signed with before"
            report.key_added_ms = max(report.key_added_ms, added)
            report.signed = True
    if problem is None:
        return None
    return BrokenLink("forged", read.position, event.sequence, problem)


def _check(
    event: AuditEvent,
    expected: int,
    prev_hash: str,
    seen: dict[int, str],
    sequences: set[int],
    key: bytes | None,
    position: str,
) -> BrokenLink | None:
    seq = event.sequence

    def broken(breach: Breach, message: str) -> BrokenLink:
        return BrokenLink(breach, position, seq, message)

    if event.algorithm not in ALGORITHMS:
        return broken("forged", f"unknown hash algorithm {event.algorithm!r}")
    if key is not None and not event.algorithm.startswith("hmac-"):
        return broken("forged", "not sealed with the audit key (plain hash, anyone can make one)")
    if key is None and event.algorithm.startswith("hmac-"):
        return broken("forged", "sealed with an audit key, and none was given to check it")
    if event.hash != event_hash(event, key):
        what = "sealed with another key, or changed" if key is not None else "changed"
        return broken("changed", f"hash does not match the content: {what}")
    if seq in seen:
        if seen[seq] == event.hash:
            return broken("duplicated", f"sequence {seq} appears twice")
        return broken("forged", f"a second, different event with sequence {seq}")
    if seq < expected:
        return broken("reordered", f"sequence {seq} after {expected - 1}")
    if seq > expected:
        first_missing = expected
        if any(s in sequences for s in range(first_missing, seq)):
            return broken("reordered", f"sequence {seq} comes before {first_missing}")
        gap = f"{first_missing}" if seq - first_missing == 1 else f"{first_missing}..{seq - 1}"
        return broken("missing", f"sequence {gap} missing before {seq}")
    if event.prev_hash != prev_hash:
        return broken("changed", f"previous-hash link does not match event {seq - 1} as read")
    return None
