"""Checkpoints without Kafka: when they are due, what one commits, what an abort forgets."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError

from exchange.audit.events import Happening
from exchange.kafka.changelog import settled_record, split_settled
from exchange.kafka.transactions import TransactionError, failure_kind
from exchange.routing.backfill import Progress
from exchange.routing.batch import Routed
from exchange.routing.checkpoint import Checkpointer, CheckpointPolicy, checkpoint_due
from exchange.routing.core import Delivery, SourceRecord
from exchange.routing.kernel import Deliveries
from exchange.routing.receipts import Hasher, ReceiptDigest, receipt_digest
from exchange.routing.state import KeyState

POLICY = CheckpointPolicy(min_interval_s=0.01, max_interval_s=0.5, max_deliveries=100)


@pytest.mark.parametrize(
    ("age", "deliveries", "backlog", "due"),
    [
        (0.0, 1, False, False),  # just opened
        (0.02, 1, False, True),  # light load: soon after the batch
        (0.02, 1, True, False),  # records waiting: keep filling the transaction
        (0.6, 1, True, True),  # ... but not for longer than max_interval_s
        (0.0, 100, True, True),  # ... nor past max_deliveries
    ],
)
def test_checkpoints_come_soon_when_idle_and_seldom_under_load(
    age: float, deliveries: int, backlog: bool, due: bool
) -> None:
    assert checkpoint_due(POLICY, age, deliveries, backlog) is due


class FakeTxn:
    """The calls a Checkpointer makes on its transactional producer, recorded."""

    def __init__(self) -> None:
        self.in_transaction = False
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self.calls: list[str] = []
        self.fail_commit: list[TransactionError] = []

    def begin(self) -> None:
        if not self.in_transaction:
            self.calls.append("begin")
        self.in_transaction = True

    def produce(
        self, topic: str, key: Any, value: Any, headers: Any = None, partition: int = -1
    ) -> None:
        self.produced.append((topic, key, value))

    produce_waiting = produce

    def produce_all(self, topic: str, deliveries: Any) -> None:
        for key, value in zip(deliveries.keys(), deliveries.values(), strict=True):
            self.produced.append((topic, key, value))

    def poll(self, _timeout: float = 0) -> None:
        pass

    def send_offsets(self, offsets: Sequence[Any], metadata: Any) -> None:
        self.calls.append(f"offsets {[(o.topic, o.partition, o.offset) for o in offsets]}")

    def commit(self) -> None:
        if self.fail_commit:
            raise self.fail_commit.pop(0)
        self.calls.append("commit")
        self.in_transaction = False

    def abort(self) -> None:
        self.calls.append("abort")
        self.in_transaction = False


class FakeAudit:
    def __init__(self) -> None:
        self.txn = FakeTxn()
        self.staged: list[Happening] = []
        self.chain: list[Happening] = []

    def stage(self, happenings: Sequence[Happening]) -> list[Any]:
        self.staged.extend(happenings)
        return []

    def committed(self) -> None:
        self.chain.extend(self.staged)
        self.staged = []

    def given_up(self) -> None:
        self.staged = []


def _started(grant_id: str) -> Happening:
    return Happening(
        kind="delivery.started", actor="router.t", ts_ms=1, grant_id=grant_id, details={}
    )


def _checkpointer() -> tuple[Checkpointer, FakeAudit]:
    audit = FakeAudit()
    cp = Checkpointer(audit, "router.t", lambda: "metadata", "progress", POLICY)  # type: ignore[arg-type]
    return cp, audit


def _routed(offsets: range, grant: str = "g1") -> Routed:
    routed = Routed(backfill=False, records=len(offsets))
    for offset in offsets:
        record = SourceRecord("src.e", 0, offset, b"k%d" % offset, b"v")
        delivery = Delivery(grant, "mzj", "dlv.mzj.e", record.key, b"d%d" % offset, (), 0)
        routed.deliveries.append((record, "e", delivery))
        routed.offsets["src.e", 0] = offset + 1
    return routed


def test_a_checkpoint_commits_deliveries_receipts_progress_and_offsets_together() -> None:
    cp, audit = _checkpointer()
    cp.carry([_started("g1")])
    cp.stage(_routed(range(0, 3)))
    backfill = _routed(range(0, 2), grant="g2")
    backfill.backfill, backfill.offsets = True, {}
    backfill.progress = [Progress("g2", "src.e", 0, 2, False)]
    cp.stage(backfill)
    cp.stage(_routed(range(3, 5)))
    cp.seal()
    committed = cp.finish()
    assert audit.txn.calls == ["begin", "offsets [('src.e', 0, 5)]", "commit"]
    assert committed.offsets == {("src.e", 0): 5} and committed.records == 7
    kinds = [h.kind for h in audit.chain]
    assert kinds == ["delivery.started", "delivery.receipt", "delivery.receipt"]
    live, fill = (h.details["receipts"] for h in audit.chain[1:])
    assert not audit.chain[1].details["backfill"] and audit.chain[2].details["backfill"]
    assert [(r["grant_id"], r["first_offset"], r["last_offset"], r["count"]) for r in live] == [
        ("g1", 0, 4, 5)
    ]
    assert live[0]["sha256"] == receipt_digest((b"k%d" % i, b"d%d" % i) for i in range(5))
    assert [(r["grant_id"], r["count"]) for r in fill] == [("g2", 2)]
    assert ("progress", b"g2|src.e|0", Progress("g2", "src.e", 0, 2, False).encode()) in (
        audit.txn.produced
    )
    assert cp.pending.empty() and not cp.carried


def test_a_retried_commit_seals_once_and_an_abort_forgets_all_but_grant_events() -> None:
    cp, audit = _checkpointer()
    started = Happening(
        kind="delivery.started", actor="router.t", ts_ms=1, grant_id="g1", details={}
    )
    cp.carry([started])
    cp.stage(_routed(range(0, 2)))
    cp.seal()
    audit.txn.fail_commit = [TransactionError("timed out", code="_TIMED_OUT", kind="retriable")]
    with pytest.raises(TransactionError):
        cp.finish()
    cp.seal()  # a retry seals nothing twice
    assert len(audit.staged) == 2
    audit.txn.fail_commit = [TransactionError("expired", code="X", kind="abortable")]
    with pytest.raises(TransactionError):
        cp.finish()
    cp.abort()
    assert cp.pending.empty() and audit.staged == [] and audit.chain == []
    # The grant event is a fact about the worker, not about the aborted data: it stays.
    assert cp.carried == [started]


def test_failures_are_sorted_by_what_the_caller_must_do() -> None:
    assert failure_kind(KafkaError(KafkaError._TIMED_OUT)) == "retriable"
    assert failure_kind(KafkaError(KafkaError.PRODUCER_FENCED, fatal=True)) == "fenced"
    assert failure_kind(KafkaError(KafkaError._STATE, fatal=True)) == "fatal"
    assert failure_kind(KafkaError(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True)) == (
        "abortable"
    )
    assert failure_kind(KafkaError(KafkaError.INVALID_TXN_STATE)) == "abortable"


def test_the_hasher_feeds_digests_in_order() -> None:
    hasher = Hasher()
    digest, expected = ReceiptDigest(), hashlib.sha256()
    parts = [bytes([i]) * (3000 + i * 50) for i in range(50)]
    for part in parts:
        hasher.update(digest, part)
        expected.update(part)
    hasher.wait()
    assert digest.hexdigest() == expected.hexdigest()
    hasher.close()


def test_a_receipt_digest_is_hashlib_sha256_running_on() -> None:
    digest, expected = ReceiptDigest(), hashlib.sha256()
    assert digest.hexdigest() == expected.hexdigest()
    # Below and above the size hashed without the GIL.
    for part in (b"", b"k", bytes(range(256)) * 20, b"v" * 100_000):
        digest.update(part)
        expected.update(part)
        assert digest.hexdigest() == expected.hexdigest()  # reading it does not end it


def test_a_receipt_digest_takes_bytes_or_a_feed_only() -> None:
    with pytest.raises(TypeError):
        ReceiptDigest().update("text")  # type: ignore[arg-type]


def test_the_hasher_reports_a_failed_update_on_wait() -> None:
    class Broken:
        def update(self, data: Any) -> None:
            raise ValueError("not hashable")

    hasher = Hasher()
    hasher.update(Broken(), b"x")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="could not be fed"):
        hasher.wait()
    hasher.close()


def test_a_seal_the_queue_cannot_take_is_an_abortable_failure() -> None:
    cp, audit = _checkpointer()
    cp.stage(_routed(range(0, 2)))

    def full(happenings: Sequence[Happening]) -> list[Any]:
        raise BufferError("the producer's queue stayed full for 30.0 s")

    audit.stage = full  # type: ignore[method-assign]
    with pytest.raises(TransactionError) as caught:
        cp.seal()
    assert caught.value.kind == "abortable" and caught.value.code == "_QUEUE_FULL"


def test_state_changes_are_committed_with_their_transaction_and_only_then() -> None:
    audit = FakeAudit()
    cp = Checkpointer(
        audit,  # type: ignore[arg-type]
        "router.t",
        lambda: "metadata",
        "progress",
        POLICY,
        lambda topic: f"state-of-{topic}",
    )
    state = KeyState()
    made = state.begin()
    made.change(b"k", b"e1", [(KeyState.slot("g1"), True, 1)])
    seq = made.end()
    assert seq is not None
    routed = _routed(range(0, 1))
    routed.state_seqs = [(state, seq)]
    routed.changelog = [
        ("src.e", Deliveries.from_columns([KeyState.digest(b"k")], [b"row"], [0], {}))
    ]
    cp.stage(routed)
    assert ("state-of-src.e", KeyState.digest(b"k"), b"row") in audit.txn.produced
    assert state.sizes() == (0, 1)  # pending while the transaction is open
    cp.seal()
    # How far the partition's committed rows routed, in the same transaction.
    settled = ("state-of-src.e", *settled_record(1))
    assert settled in audit.txn.produced
    assert split_settled([(KeyState.digest(b"k"), b"row"), settled[1:]]) == (
        [(KeyState.digest(b"k"), b"row")],
        1,
    )
    audit.txn.fail_commit = [TransactionError("timed out", code="_TIMED_OUT", kind="retriable")]
    with pytest.raises(TransactionError):
        cp.finish()
    assert state.sizes() == (0, 1)  # not committed: still pending
    cp.finish()
    assert state.sizes() == (1, 0)
