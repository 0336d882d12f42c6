"""Receipts of one checkpoint: what it delivered per grant and source partition, as it delivers.

A checkpoint (one Kafka transaction) seals one ``delivery.receipt`` event per consumer with a row
per grant and source partition (:mod:`exchange.audit.receipts`). The digest is kept running (a
SHA-256 fed each delivery's key and value, length-prefixed), so a checkpoint holds no copy of
what it delivered, however many records it spans. The running digest is the kernel's
``ReceiptDigest``: it hashes what the kernel delivered straight from the kernel's buffers (a
``Feed``), so no copy of a batch's deliveries is made for it either.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exchange._kernel import Feed, ReceiptDigest
from exchange.audit.receipts import ReceiptRow

__all__ = ["Hasher", "Receipt", "ReceiptBook", "ReceiptDigest", "digest_update", "receipt_digest"]


class Hasher:
    """Feeds receipt digests in a thread of its own, in the order given.

    A checkpoint's digests take about 0.6 µs per delivery of SHA-256 (1.3 kB of input each);
    ``ReceiptDigest`` releases the GIL while it hashes a feed, so in this thread the hashing runs
    beside the routing thread instead of inside it. :meth:`wait` before reading a digest."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[ReceiptDigest | None, bytes | Feed]] = queue.Queue()
        self._thread: threading.Thread | None = None
        #: The first update that failed: every digest after it is unreliable.
        self._failure: BaseException | None = None

    def update(self, digest: ReceiptDigest, data: bytes | Feed) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="receipt-digests", daemon=True)
            self._thread.start()
        self._queue.put((digest, data))

    def wait(self) -> None:
        """Until every update given so far is done; raises what made an update fail."""
        self._queue.join()
        if self._failure is not None:
            raise RuntimeError(f"a receipt digest could not be fed: {self._failure!r}")

    def close(self) -> None:
        """End the thread once it has done what it was given."""
        if self._thread is not None:
            self._queue.put((None, b""))
            self._thread = None

    def _run(self) -> None:
        while True:
            digest, data = self._queue.get()
            try:
                if digest is None:
                    return
                if self._failure is None:
                    digest.update(data)
            except BaseException as exc:  # kept for wait(); the thread goes on
                self._failure = exc
            finally:
                # Not kept while waiting for the next: a feed holds its batch's whole buffer.
                del digest, data
                self._queue.task_done()


def digest_update(digest: Any, key: bytes | None, value: bytes | None) -> None:
    """Feed one delivered record to a receipt's SHA-256 (the format `audit verify` checks)."""
    for part in (key or b"", value or b""):
        digest.update(_length(part))
        digest.update(part)


def _length(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big")


def receipt_digest(records: Iterable[tuple[bytes | None, bytes | None]]) -> str:
    """SHA-256 over delivered ``(key, value)`` records, length-prefixed, in order."""
    digest = hashlib.sha256()
    for key, value in records:
        digest_update(digest, key, value)
    return digest.hexdigest()


@dataclass
class Receipt:
    """What one checkpoint delivered under one grant from one source partition."""

    grant_id: str
    consumer: str
    entry: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    delivery_topic: str | None = None
    count: int = 0
    digest: ReceiptDigest = field(default_factory=ReceiptDigest)

    def add(
        self,
        offset: int,
        delivery_topic: str,
        key: bytes | None,
        value: bytes | None,
        hasher: Hasher | None = None,
    ) -> None:
        if hasher is None:
            self.last_offset = offset
            self.delivery_topic = delivery_topic
            self.count += 1
            digest_update(self.digest, key, value)
            return
        # Through the hasher like the kernel's feeds, so the digest keeps the delivery order.
        feed = b"".join(
            part for data in (key or b"", value or b"") for part in (_length(data), data)
        )
        self.extend(offset, delivery_topic, 1, feed, hasher)

    def extend(
        self,
        last_offset: int,
        delivery_topic: str,
        count: int,
        feed: bytes | Feed,
        hasher: Hasher | None = None,
    ) -> None:
        """What the compiled kernel delivered: ``count`` deliveries up to ``last_offset``, fed to
        the digest as :func:`digest_update` would feed them (``feed``: the kernel's deliveries,
        or their digest input laid out as bytes)."""
        self.last_offset = last_offset
        self.delivery_topic = delivery_topic
        self.count += count
        if hasher is None:
            self.digest.update(feed)
        else:
            hasher.update(self.digest, feed)

    def row(self) -> ReceiptRow:
        return ReceiptRow(
            grant_id=self.grant_id,
            consumer=self.consumer,
            entry=self.entry,
            source_topic=self.topic,
            partition=self.partition,
            first_offset=self.first_offset,
            last_offset=self.last_offset,
            count=self.count,
            delivery_topic=self.delivery_topic,
            sha256=self.digest.hexdigest(),
        )


class ReceiptBook:
    """The receipts of one checkpoint, live stream and backfills apart (their events say which)."""

    def __init__(self) -> None:
        self._receipts: dict[tuple[bool, str, str, int], Receipt] = {}

    def receipt(
        self,
        backfill: bool,
        grant_id: str,
        consumer: str,
        entry: str,
        topic: str,
        partition: int,
        offset: int,
    ) -> Receipt:
        key = (backfill, grant_id, topic, partition)
        found = self._receipts.get(key)
        if found is None:
            found = self._receipts[key] = Receipt(
                grant_id, consumer, entry, topic, partition, offset, offset
            )
        return found

    def rows(self, backfill: bool) -> Iterator[ReceiptRow]:
        return (r.row() for (b, *_), r in self._receipts.items() if b == backfill)

    def __len__(self) -> int:
        return len(self._receipts)
