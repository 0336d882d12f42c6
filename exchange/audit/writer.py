"""Writing the audit trail: one chain per writer, on ``exchange.audit``, in Kafka transactions.

The producer's ``transactional.id`` is the chain's id, so Kafka itself keeps a chain to a single
writer: a second process opening the same chain fences the first (whose next write fails with
``FENCED``) instead of forking the chain. A chain lives in one partition (chosen from its id), so
its order on the topic is its order of writing; a new writer finds where its chain ended by
reading that partition backwards.

Writes can carry other records in the same transaction, so a grant change and its audit event are
committed together or not at all.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from prometheus_client import Gauge

from exchange.audit.events import GENESIS, AuditEvent, Chain, Happening
from exchange.audit.signing import Signer
from exchange.catalog.avro import canonical_json, load_schema
from exchange.config import ExchangeSettings
from exchange.errors import ExchangeError
from exchange.files import read_hex_secret
from exchange.kafka.control import Message, partitions, read_range, reader, watermarks
from exchange.kafka.errors import KafkaOpError
from exchange.kafka.registry import Registry
from exchange.kafka.transactions import TransactionalProducer, TransactionError
from exchange.kafka.wire import AvroCodec, SchemaLookup, WireFormatError, value_subject

AUDIT_SEQUENCE = Gauge(
    "exchange_audit_chain_last_sequence",
    "Sequence of the last audit event this process wrote, per chain (compare with verify).",
    ("chain",),
)
AUDIT_SCHEMA_FILE = Path("exchange/audit_event.avsc")
#: How many records to read per step when looking for a chain's last event.
TAIL_WINDOW = 2000


@dataclass(frozen=True)
class OutRecord:
    """A record written in the same transaction as audit events."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, str | bytes | None]] = ()


class AuditError(ExchangeError):
    """The audit trail cannot be written or read."""


def load_key(settings: ExchangeSettings) -> bytes | None:
    """The HMAC key sealing audit events, or ``None`` when the deployment has none configured."""
    file = settings.audit.key_file
    if file is None:
        return None
    path = settings.resolve(file)
    try:
        return read_hex_secret(path)
    except FileNotFoundError as exc:
        raise AuditError(
            f"audit.key_file {path} does not exist; create one with `exchange audit keygen`",
            code="NO_AUDIT_KEY",
        ) from exc
    except ValueError as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise AuditError(
                f"cannot read audit.key_file {path}: {exc}", code="NO_AUDIT_KEY"
            ) from exc
        raise AuditError(f"audit.key_file {path}: key {exc}", code="BAD_AUDIT_KEY") from exc
    except OSError as exc:
        raise AuditError(f"cannot read audit.key_file {path}: {exc}", code="NO_AUDIT_KEY") from exc


def load_signer(settings: ExchangeSettings) -> Signer | None:
    """This principal's signing key (``audit.signing_key_file``), or ``None`` if it has none."""
    file = settings.audit.signing_key_file
    return None if file is None else Signer.load(settings.resolve(file))


def audit_schema(settings: ExchangeSettings) -> dict[str, Any]:
    return load_schema(settings.schemas_dir / AUDIT_SCHEMA_FILE)


def audit_codec(settings: ExchangeSettings, registry: Registry) -> AvroCodec:
    """Registers the audit event schema (idempotent) and returns its codec."""
    schema = audit_schema(settings)
    schema_id = registry.register(value_subject(settings.topics.audit), canonical_json(schema))
    return AvroCodec(schema_id, schema)


def decode_event(lookup: SchemaLookup, value: bytes | None) -> AuditEvent:
    try:
        return AuditEvent.from_avro(lookup.decode(value))
    except (TypeError, KeyError) as exc:
        raise WireFormatError(f"not an audit event: {exc}", code="NOT_AUDIT_EVENT") from exc


def chain_partition(chain_id: str, partitions: int) -> int:
    return zlib.crc32(chain_id.encode("utf-8")) % partitions


class AuditWriter:
    """The single writer of one audit chain; :meth:`connect` opens one."""

    def __init__(
        self,
        settings: ExchangeSettings,
        chain_id: str,
        txn: TransactionalProducer,
        codec: AvroCodec,
        partition: int,
        chain: Chain,
    ) -> None:
        """A writer of an opened chain (no I/O here: :meth:`connect` does it)."""
        self.settings = settings
        self.topic = settings.topics.audit
        self.chain_id = chain_id
        self.txn = txn
        self._codec = codec
        self.partition = partition
        self.chain = chain
        #: The chain as last committed: where :meth:`given_up` goes back to.
        self._settled = (chain.next_sequence, chain.last_hash)

    @classmethod
    def connect(
        cls,
        settings: ExchangeSettings,
        chain_id: str,
        native: bool = False,
        producer: Mapping[str, Any] | None = None,
    ) -> AuditWriter:
        """Register the audit schema, open the chain's transactional producer (fencing any
        earlier writer of the chain and aborting its open transaction) and find the chain's
        last committed event.

        ``native``: the writer's producer also produces a router's ``Deliveries`` through
        librdkafka directly (:mod:`exchange.kafka.native`); only the router asks for it.
        ``producer``: librdkafka settings of the writer's producer on top of the defaults."""
        registry = Registry(settings.registry)
        codec = audit_codec(settings, registry)
        timeout = settings.kafka.request_timeout_s
        #: Kafka keeps the chain to one writer: the transactional id is the chain's.
        txn = TransactionalProducer(
            settings.kafka.client_config(**{"linger.ms": 5, **(producer or {})}),
            f"exchange-audit.{chain_id}",
            timeout,
            native=native,
        )
        try:
            txn.open()
        except TransactionError as exc:
            raise KafkaOpError(
                f"cannot open audit chain {chain_id}: {exc}", code=exc.code, retriable=exc.retriable
            ) from exc
        try:
            return cls._opened(settings, chain_id, txn, codec, registry)
        except BaseException:
            txn.close()  # its poll thread would run on
            raise

    @classmethod
    def _opened(
        cls,
        settings: ExchangeSettings,
        chain_id: str,
        txn: TransactionalProducer,
        codec: AvroCodec,
        registry: Registry,
    ) -> AuditWriter:
        timeout = settings.kafka.request_timeout_s
        topic = settings.topics.audit
        numbers = partitions(txn.client, topic, timeout)
        if not numbers:
            raise AuditError(
                f"audit topic {topic} does not exist; run `exchange catalog apply`",
                code="NO_AUDIT_TOPIC",
            )
        partition = chain_partition(chain_id, len(numbers))
        last = _find_last(settings, SchemaLookup(registry.schema_by_id), chain_id, partition)
        chain = Chain(
            chain_id,
            settings.audit.algorithm,
            load_key(settings),
            0 if last is None else last.sequence + 1,
            GENESIS if last is None else last.hash,
            load_signer(settings),
        )
        return cls(settings, chain_id, txn, codec, partition, chain)

    def write(
        self,
        happenings: Sequence[Happening],
        with_records: Sequence[OutRecord] = (),
    ) -> list[AuditEvent]:
        """Seal and write events, plus other records, in one transaction."""
        try:
            self.txn.begin()
            for out in with_records:
                self.txn.produce(out.topic, out.key, out.value, out.headers)
            events = self.stage(happenings)
            self.txn.commit()
        except TransactionError as exc:
            self.given_up()
            self._abort()
            raise self._error(exc) from exc
        self.committed()
        return events

    # -- for a writer that keeps its transaction open (the router's checkpoints) --------------

    def stage(self, happenings: Sequence[Happening]) -> list[AuditEvent]:
        """Seal events and hand them to the open transaction; :meth:`committed` or
        :meth:`given_up` once the transaction ended."""
        before = (self.chain.next_sequence, self.chain.last_hash)
        events = [self.chain.seal(h) for h in happenings]
        key = self.chain_id.encode("utf-8")
        try:
            for event in events:
                # Waits while the router's deliveries fill the producer's queue.
                self.txn.produce_waiting(
                    self.topic, key, self._codec.encode(event.to_avro()), partition=self.partition
                )
        except BaseException:
            # Not staged (or only some): sealed again, they must follow the chain as it was.
            self.chain.rewind(*before)
            raise
        return events

    def committed(self) -> None:
        """The transaction with the staged events committed: they are the chain now."""
        self._settled = (self.chain.next_sequence, self.chain.last_hash)
        if self._settled[0] > 0:
            AUDIT_SEQUENCE.labels(self.chain_id).set(self._settled[0] - 1)

    def given_up(self) -> None:
        """The transaction was aborted: events staged since the last commit never happened."""
        self.chain.rewind(*self._settled)

    def _error(self, exc: TransactionError) -> ExchangeError:
        if exc.kind == "fenced":
            return AuditError(
                f"audit chain {self.chain_id} was taken over by another writer; "
                "this process may no longer write it",
                code="FENCED",
            )
        return KafkaOpError(
            f"cannot write audit events of {self.chain_id}: {exc}",
            code=exc.code,
            retriable=exc.retriable,
        )

    def close(self) -> None:
        self.txn.close()

    def _abort(self) -> None:
        # Fatal or no transaction: the next write fails with the real reason.
        with contextlib.suppress(KafkaOpError):
            self.txn.abort()


def _find_last(
    settings: ExchangeSettings, lookup: SchemaLookup, chain_id: str, partition: int
) -> AuditEvent | None:
    """The chain's last committed event: read its partition backwards in windows."""
    timeout = settings.kafka.request_timeout_s
    topic = settings.topics.audit
    consumer = reader(settings.kafka, committed=True)
    probe = reader(settings.kafka)
    try:
        # The high watermark, not the last stable offset: another chain's transaction in
        # this partition may still be committing, and our last event may lie beyond it.
        low, high = watermarks(probe, topic, partition, timeout)
        end = high
        while end > low:
            start = max(low, end - TAIL_WINDOW)
            window = read_range(consumer, topic, partition, start, end, timeout)
            for msg in reversed(window):
                if msg.key == chain_id.encode("utf-8"):
                    return _decode_last(lookup, chain_id, msg)
            end = start
        return None
    except KafkaException as exc:
        raise KafkaOpError.wrap(f"cannot read audit chain {chain_id}", exc) from exc
    except KafkaOpError as exc:  # already wrapped (watermarks, read_range): add the chain
        raise KafkaOpError(
            f"cannot read audit chain {chain_id}: {exc}",
            code=exc.code,
            retriable=exc.retriable,
        ) from exc
    finally:
        consumer.close()
        probe.close()


def _decode_last(lookup: SchemaLookup, chain_id: str, msg: Message) -> AuditEvent:
    try:
        return decode_event(lookup, msg.value)
    except WireFormatError as exc:
        raise AuditError(
            f"the last event of audit chain {chain_id} (partition {msg.partition} "
            f"offset {msg.offset}) cannot be read: {exc}; run `exchange audit verify`",
            code="CHAIN_UNREADABLE",
        ) from exc
