"""Reading one's own deliveries: decoded changes, committed after the handler.

A department system hands :meth:`DeliveryConsumer.run` a function; it is called once per change,
in order per key. The consumer commits a record's offset only after the handler returned for it
(synchronously, per polled batch). A handler that raises stops the consumer: what it had handled
before is committed, the failing record is not, and is handed over again next time. It reads
committed records only (librdkafka's default ``isolation.level``): the router writes each change
once in its transactions, so there are no repeats to drop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import BaseModel, ValidationError

from exchange.client.portal import PortalClient
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.kafka.control import to_message
from exchange.kafka.errors import KafkaOpError, RegistryError
from exchange.kafka.registry import Registry
from exchange.kafka.wire import SchemaLookup, WireFormatError
from exchange.routing.core import EVENT_HEADER, GRANT_HEADER, SOURCE_HEADER

log = logging.getLogger(__name__)
T = TypeVar("T")
#: How often the consumer re-reads the cluster's topics (librdkafka's default is 5 minutes): a
#: grant's new generation is read within this long of its topic being made.
METADATA_REFRESH_MS = 5000


class ClientError(ExchangeError):
    """The delivery consumer cannot go on (configuration, Kafka or registry failure)."""


@dataclass(frozen=True)
class Change(Generic[T]):
    """One change of an entry's record as delivered under a grant."""

    #: ``c`` create, ``u`` update, ``r`` snapshot read, ``d`` delete.
    op: str
    #: The record's key in the delivery topic: the business key, or a salted hash of it when
    #: the grant masks the key field.
    key: str | None
    #: The granted fields (projected and masked); ``None`` for a delete.
    value: T | None
    grant_id: str | None
    event_id: str | None
    provider: str | None
    #: When the change was read at its source.
    ts: dt.datetime | None
    topic: str
    partition: int
    offset: int
    #: Its place in the source, as a token of the grant (the same if it is ever delivered again;
    #: nothing in common with its token under another grant), like ``event_id``.
    source: str | None


@dataclass
class ConsumerStats:
    received: int = 0
    handled: int = 0
    #: Records that could not be decoded, set aside (logged) with the reason.
    undecodable: list[str] = field(default_factory=list)


class DeliveryConsumer(Generic[T]):
    """A department's consumer of its delivery topics (``dlv.<department>.<entry>.<grant>.<gen>``:
    one per grant generation, followed as grants change; ``docs/consuming.md``)."""

    def __init__(
        self,
        settings: ExchangeSettings,
        department: str,
        entries: Iterable[str],
        *,
        model: type[T] | None = None,
        group_id: str | None = None,
        portal: PortalClient | None = None,
    ) -> None:
        self.settings = settings
        #: The portal, with the department's token: for :meth:`file_objection`.
        self.portal = portal
        self.department = department
        #: One pattern per entry: every grant generation's topic of this department on it
        #: (``TopicSettings.delivery_of``). A grant that changes delivers to a new topic and
        #: its old one is deleted; librdkafka follows both from the cluster's metadata.
        self.topics = [
            "^" + re.escape(settings.topics.deliveries_of(department, e)) + r"[^.]+\.[^.]+$"
            for e in entries
        ]
        if not self.topics:
            raise ClientError("name at least one entry to consume", code="NO_ENTRIES")
        self.model = model
        #: Consumer groups start with the department's id (the broker's ACLs allow only those).
        self.group_id = group_id or f"{department}.exchange-client"
        if not self.group_id.startswith(f"{department}."):
            raise ClientError(
                f"group id {self.group_id!r} must start with {department + '.'!r}",
                code="BAD_GROUP",
            )
        self.lookup = SchemaLookup(Registry(settings.registry).schema_by_id)
        self.stats = ConsumerStats()
        self._consumer = Consumer(
            settings.kafka.client_config(
                **{
                    "group.id": self.group_id,
                    "enable.auto.commit": False,
                    # A new consumer rebuilds the full current table from the compacted topic.
                    "auto.offset.reset": "earliest",
                    # New generations' topics are found from metadata: within seconds.
                    "topic.metadata.refresh.interval.ms": METADATA_REFRESH_MS,
                    "client.id": f"{self.group_id}-{uuid.uuid4().hex[:8]}",
                }
            )
        )
        #: The group gave this consumer its partitions: only then does waiting count as idle
        #: (a member that died holds its partitions until its session times out).
        self.assigned = False
        #: Per partition, the last delete handed over: ``(key, event id)``. The router writes a
        #: tombstone right after each delete, for compaction; it is the same change, so it is
        #: handed over only when its delete is not (compacted away). Kept in the committed
        #: offset's metadata, so a consumer restarted between the two still knows.
        self._deleted: dict[tuple[str, int], tuple[str | None, str | None]] = {}
        self._consumer.subscribe(self.topics, on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = True
        committed = consumer.committed(partitions, timeout=self.settings.kafka.request_timeout_s)
        for tp in committed:
            last = _last_delete(tp.metadata)
            if last is not None:
                self._deleted[(tp.topic, tp.partition)] = last

    def run(
        self,
        handler: Callable[[Change[T]], object],
        *,
        max_changes: int | None = None,
        idle_timeout_s: float | None = None,
        batch_size: int = 500,
    ) -> ConsumerStats:
        """Call ``handler`` for each new change until stopped, ``max_changes`` were handled, or
        nothing arrived for ``idle_timeout_s`` seconds once the group assigned this consumer its
        partitions (``None``: run until interrupted)."""
        idle_since: float | None = None
        while max_changes is None or self.stats.handled < max_changes:
            limit = batch_size if max_changes is None else max_changes - self.stats.handled
            try:
                messages = self._consumer.consume(min(batch_size, limit), timeout=1.0)
            except KafkaException as exc:
                raise KafkaOpError.wrap("cannot read deliveries", exc) from exc
            if not messages:
                if self.assigned:
                    now = time.monotonic()
                    idle_since = now if idle_since is None else idle_since
                    if idle_timeout_s is not None and now - idle_since >= idle_timeout_s:
                        break
                continue
            idle_since = None
            done: dict[tuple[str, int], int] = {}
            try:
                for msg in messages:
                    self._handle(msg, handler)
                    if msg.error() is None:  # an error event has no offset of its own
                        done[(str(msg.topic()), int(msg.partition() or 0))] = int(msg.offset() or 0)
            except BaseException:
                # Keep what was handled, but never let a failing commit hide the first error.
                with contextlib.suppress(KafkaOpError):
                    self._commit({tp: o + 1 for tp, o in done.items()})
                raise
            self._commit(self._past(done))
        return self.stats

    def _past(self, done: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """Where to commit after handling everything up to ``done``: the consumer's position,
        which lies past the transaction markers the router's commits leave after its records
        (committing ``offset + 1`` would leave a caught-up consumer a lag of one marker)."""
        after = {tp: o + 1 for tp, o in done.items()}
        positions = self._consumer.position([TopicPartition(t, p) for t, p in after])
        for tp in positions:
            key = (tp.topic, tp.partition)
            if tp.error is None and tp.offset > after[key]:
                after[key] = tp.offset
        return after

    def _handle(self, msg: Message, handler: Callable[[Change[T]], object]) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
                # The router creates a delivery topic when the first grant for it is active.
                log.warning("%s (no active grant yet?); waiting for it", err.str())
                return
            if err.code() in (
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED,
            ):
                raise KafkaOpError(
                    f"the broker refuses {self.department} access to {msg.topic() or 'a topic'} "
                    f"(group {self.group_id}): no active grant for it, or the credentials are "
                    f"not this department's consumer principal ({err.str()})",
                    code=err.name(),
                )
            raise KafkaOpError.wrap("cannot read deliveries", KafkaException(err))
        self.stats.received += 1
        topic, partition = str(msg.topic()), int(msg.partition() or 0)
        headers = _headers(msg)
        try:
            change = self._decode(msg, headers)
        except (WireFormatError, ValidationError) as exc:
            where = f"{topic}/{partition}/{msg.offset()}"
            log.error("setting aside undecodable delivery at %s: %s", where, exc)
            self.stats.undecodable.append(f"{where}: {exc}")
            return
        if msg.value() is None and self._deleted.get((topic, partition)) == (
            change.key,
            change.event_id,
        ):
            return  # the tombstone of the delete just handed over
        handler(change)
        self.stats.handled += 1
        if change.op == "d":
            self._deleted[(topic, partition)] = (change.key, change.event_id)

    def _decode(self, msg: Message, headers: dict[str, str]) -> Change[T]:
        key_bytes = msg.key()
        raw = msg.value()
        # A tombstone whose delete record compaction already removed is still a delete.
        record: dict[str, Any] = {"op": "d"} if raw is None else self._record(raw)
        after = record.get("after")
        value: Any = after
        if after is not None and self.model is not None and issubclass(self.model, BaseModel):
            value = self.model.model_validate(after)
        ts = record.get("ts_ms")
        return Change(
            op=str(record.get("op")),
            key=None if key_bytes is None else key_bytes.decode("utf-8", "replace"),
            value=value,
            grant_id=record.get("grant_id", headers.get(GRANT_HEADER)),
            event_id=record.get("event_id", headers.get(EVENT_HEADER)),
            provider=record.get("provider"),
            ts=ts if isinstance(ts, dt.datetime) else None,
            topic=str(msg.topic()),
            partition=int(msg.partition() or 0),
            offset=int(msg.offset() or 0),
            # In the value since the router writes headers only on tombstones; deliveries
            # written before then carry it as a header.
            source=record.get("source_position") or headers.get(SOURCE_HEADER),
        )

    def _record(self, raw: bytes) -> dict[str, Any]:
        try:
            return self.lookup.decode(raw)
        except RegistryError as exc:
            if exc.http_status == 404:
                raise WireFormatError(str(exc), code="UNKNOWN_SCHEMA") from exc
            raise ClientError(f"schema registry: {exc}", code=exc.code) from exc

    def _commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        if not next_offsets:
            return
        offsets = [
            TopicPartition(t, p, o, metadata=_delete_metadata(self._deleted.get((t, p))))
            for (t, p), o in next_offsets.items()
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise KafkaOpError.wrap("cannot commit deliveries", exc) from exc

    def file_objection(
        self, change: Change[T], fields: Iterable[str], problem: str, evidence: str = ""
    ) -> dict[str, Any]:
        """Object to a change received (数据质量异议): ``fields`` are wrong, ``problem`` says
        how, ``evidence`` how the department knows. It reaches the provider's inbox; the
        exchange sees the provider's fix in its next version of the record. Returns the
        objection as filed (``id``, ``state``); needs ``portal=`` and a token with the
        applicant role."""
        if self.portal is None:
            raise ClientError(
                "objections go through the portal: make the consumer with "
                "portal=PortalClient(url, token)",
                code="NO_PORTAL",
            )
        if change.grant_id is None or change.key is None:
            raise ClientError("a change without its grant or key cannot be objected to")
        return self.portal.file_objection(
            change.grant_id, change.key, list(fields), problem, evidence, change.event_id
        )

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> DeliveryConsumer[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _headers(msg: Message) -> dict[str, str]:
    return {k: v.decode("utf-8", "replace") for k, v in to_message(msg).headers}


def _delete_metadata(last: tuple[str | None, str | None] | None) -> str:
    """Commit metadata naming the partition's last delete handed over (``""``: none)."""
    if last is None:
        return ""
    return json.dumps({"deleted": list(last)}, ensure_ascii=False, separators=(",", ":"))


def _last_delete(metadata: str | None) -> tuple[str | None, str | None] | None:
    """The last delete named by commit metadata; ``None`` for anything else (then a tombstone
    whose delete was handled before a restart is handed over as a delete again)."""
    try:
        data = json.loads(metadata or "")
    except ValueError:
        return None
    last = data.get("deleted") if isinstance(data, dict) else None
    if not isinstance(last, list) or len(last) != 2:
        return None
    key, event = last
    if not all(v is None or isinstance(v, str) for v in (key, event)):
        return None
    return key, event
