"""Routing one source record: validate it, then make one delivery per grant that lets it through.

No Kafka here: :class:`Router` takes a record as read (topic, partition, offset, key, value) and
returns what to write (deliveries, or a rejection for the DLQ and the audit trail). The faust app
in :mod:`exchange.routing.app` only moves records between Kafka and this class.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exchange.catalog.avro import FieldType, record_fields
from exchange.catalog.keys import record_key
from exchange.catalog.model import CatalogEntry
from exchange.errors import ExchangeError
from exchange.grants.model import GrantTerms
from exchange.kafka.envelope import EnvelopeEncoder
from exchange.kafka.errors import RegistryError
from exchange.kafka.wire import SchemaLookup, WireFormatError, schema_id_of, value_subject
from exchange.routing.state import KeyState, StateBatch, slot_of
from exchange.routing.transform import DeliveryPlan
from exchange.rules.rules import Checker, checker

GRANT_HEADER = "exchange.grant"
EVENT_HEADER = "exchange.event_id"
SOURCE_HEADER = "exchange.source"
OPS = frozenset({"c", "u", "d", "r"})


@dataclass(frozen=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @functools.cached_property
    def position(self) -> str:
        # Cached: every delivery of the record carries it in a header.
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Rejection:
    #: Short fixed word: metric label, DLQ header and audit field.
    reason: str
    errors: tuple[Mapping[str, Any], ...]
    entry: str | None
    department: str | None


@dataclass(frozen=True)
class Delivery:
    grant_id: str
    consumer: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    #: When the change was read at its source (for the routing latency).
    source_ts_ms: int


#: Room on top of ``router.max_delivery_bytes`` for what librdkafka and the broker count
#: besides key, value and header bytes (header lengths, record and batch framing).
DELIVERY_FRAMING_BYTES = 65_536


@dataclass(frozen=True)
class Refusal:
    """A grant's delivery of a valid record that the router will not write: over
    ``router.max_delivery_bytes``. Produced anyway, librdkafka would refuse it (or the broker
    would, aborting the whole checkpoint), and routing would stop at the record for everyone."""

    grant_id: str
    consumer: str
    topic: str
    size: int
    limit: int


@dataclass
class Outcome:
    entry: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    rejection: Rejection | None = None
    #: Grants whose row filter kept the record from their consumer: ``(grant id, consumer)``.
    filtered: list[tuple[str, str]] = field(default_factory=list)
    #: Grants whose delivery of the record is too large to write.
    refused: list[Refusal] = field(default_factory=list)
    #: Routed with a per-key state: the key of the accepted change the state took in.
    changed: bytes | None = None


@dataclass(frozen=True)
class ActiveGrant:
    plan: DeliveryPlan
    topic: str
    #: Writes deliveries in the grant's registered delivery schema. Built when the grant is
    #: prepared, so a delivery schema it cannot write fails then rather than on the first
    #: delivery; grants with the same delivery schema share one. Only the parsed schema is
    #: kept (not the schema itself nor a decoder): a worker may hold 10,000 grants.
    envelope: EnvelopeEncoder
    #: The delivery topic's partition count when the grant was prepared: the kernel picks each
    #: delivery's partition as librdkafka would (0: librdkafka picks it).
    partitions: int = 0

    @functools.cached_property
    def key(self) -> str:
        """How routing names the grant (:func:`grant_key`)."""
        return grant_key(self.plan.grant)


def grant_key(grant: GrantTerms) -> str:
    """How routing names a grant: its id and generation (``GrantTerms.generation``). Backfill
    progress, hand-overs and per-key holdings are kept under it, so a grant whose terms change
    starts afresh: a backfill of the current rows under the new terms, into the new
    generation's topic."""
    return f"{grant.id}@{grant.generation()}"


class EntryRoute:
    """One catalog entry as the router knows it: its checks and its active grants."""

    def __init__(self, entry: CatalogEntry, record_schema: Mapping[str, Any]) -> None:
        self.entry = entry
        self.fields: dict[str, FieldType] = record_fields(dict(record_schema))
        self.required = frozenset(n for n, f in self.fields.items() if not f.nullable)
        self.checks: list[tuple[str, str, Checker]] = [
            (name, rule.name, checker(rule))
            for name, spec in entry.fields.items()
            for rule in spec.rules
        ]
        self.grants: dict[str, ActiveGrant] = {}


class Router:
    """Source records in, deliveries and rejections out."""

    def __init__(self, lookup: SchemaLookup, max_delivery_bytes: int = 1_000_000) -> None:
        self._lookup = lookup
        #: ``router.max_delivery_bytes``: a larger delivery is refused (:class:`Refusal`).
        self.max_delivery_bytes = max_delivery_bytes
        self.routes: dict[str, EntryRoute] = {}  # by source topic

    def set_entry(self, topic: str, route: EntryRoute) -> None:
        old = self.routes.get(topic)
        if old is not None:
            route.grants = old.grants
        self.routes[topic] = route

    def set_grants(self, topic: str, grants: Iterable[ActiveGrant]) -> None:
        self.routes[topic].grants = {g.key: g for g in grants}

    def route(
        self,
        record: SourceRecord,
        only: Container[str] | None = None,
        state: StateBatch | None = None,
        superseded: Callable[[SourceRecord, str], bool] | None = None,
    ) -> Outcome:
        """Validate ``record`` and deliver it to each active grant (or to those whose routing
        key, :attr:`ActiveGrant.key`, is in ``only``).

        ``superseded`` (a backfill's): whether an accepted change (record, event id) is not
        its key's current version; then nothing is delivered and nothing changes.

        With ``state`` (the per-key state of the record's partition), each grant gets what
        the change means for it (:mod:`exchange.routing.state`): a create on entering its
        scope, a delete on leaving it or on a delete of a key it held, nothing when what it
        sees did not change."""
        route = self.routes.get(record.topic)
        if route is None:
            return Outcome(
                rejection=_reject("unknown_entry", f"{record.topic} is not a catalog entry's topic")
            )
        outcome = Outcome(entry=route.entry.id)
        if record.value is None:
            # A source tombstone follows its `d` record, which was already delivered as a delete.
            if not record.key:
                # One without a key deletes nothing: a fault of its producer, and set aside so
                # the provider hears of it rather than the record vanishing.
                outcome.rejection = _reject(
                    "no_key", "a tombstone (no value) without a key", route.entry.id
                )
            return outcome
        try:
            # Strict: what the kernel would not take must not pass here either.
            change = self._lookup.decode(record.value, strict=True)
        except WireFormatError as exc:
            outcome.rejection = _reject(_reason(exc.code), str(exc), route.entry.id)
            return outcome
        except RegistryError as exc:
            if exc.http_status == 404:
                outcome.rejection = _reject("unknown_schema", str(exc), route.entry.id)
                return outcome
            raise  # registry down: not the record's fault, so not the DLQ's business
        except ExchangeError as exc:
            outcome.rejection = _reject("bad_avro", str(exc), route.entry.id)
            return outcome
        schema_id = schema_id_of(record.value)
        subject = value_subject(record.topic)
        if not self._lookup.registered_under(schema_id, subject):
            outcome.rejection = _reject(
                "schema_mismatch",
                f"schema id {schema_id} is not a version of {subject}: the record was framed "
                "with another subject's schema",
                route.entry.id,
            )
            return outcome
        problems, department = _check_change(route, change, record.key)
        if problems:
            reason, errors = problems
            outcome.rejection = Rejection(reason, errors, route.entry.id, department)
            return outcome
        if superseded is not None and superseded(record, str(change["event_id"])):
            return outcome
        op, after = change["op"], change["after"]
        ts_ms = _millis(change["ts_ms"])
        if state is not None and record.key:
            self._route_keyed(route, record, change, ts_ms, only, state, outcome)
            return outcome
        for active in route.grants.values():
            plan = active.plan
            grant = plan.grant
            if only is not None and active.key not in only:
                continue
            if after is not None and not plan.accepts(after):
                outcome.filtered.append((grant.id, grant.consumer))
                continue
            deliveries = _deliveries(
                active, record, op, after, ts_ms, str(change["event_id"]), route.entry.provider
            )
            self._keep(outcome, active, deliveries)
        return outcome

    def _route_keyed(
        self,
        route: EntryRoute,
        record: SourceRecord,
        change: Mapping[str, Any],
        ts_ms: int,
        only: Container[str] | None,
        state: StateBatch,
        outcome: Outcome,
    ) -> None:
        """Deliveries of an accepted change as the per-key state makes them (``route``)."""
        key = record.key or b""
        op, after = change["op"], change["after"]
        live = [a for a in route.grants.values() if only is None or a.key in only]
        views: list[tuple[int, bool, int]] = []
        projected: list[bytes | None] = []
        for active in live:
            passes = after is not None and active.plan.accepts(after)
            data = active.envelope.encode_after(active.plan.project(after)) if passes else None
            projected.append(data)
            hashed = 0 if data is None else KeyState.record_hash(data)
            views.append((slot_of(active.key), passes, hashed))
        event_id = str(change["event_id"])
        keep = [slot_of(g) for g in route.grants]
        actions = state.change(key, event_id.encode(), views, delete=op == "d", keep=keep)
        outcome.changed = key
        for active, data, (_slot, action) in zip(live, projected, actions, strict=True):
            grant = active.plan.grant
            if action == "skip":
                if after is not None and data is None:
                    outcome.filtered.append((grant.id, grant.consumer))
                continue
            deliveries = _deliveries(
                active,
                record,
                action,
                None if action == "d" else after,
                ts_ms,
                event_id,
                route.entry.provider,
                data,
            )
            self._keep(outcome, active, deliveries)

    def _keep(self, outcome: Outcome, active: ActiveGrant, deliveries: list[Delivery]) -> None:
        """A grant's deliveries of a record, or their refusal when one is over the limit."""
        size = max(delivery_size(d) for d in deliveries)
        if size > self.max_delivery_bytes:
            grant = active.plan.grant
            refusal = Refusal(grant.id, grant.consumer, active.topic, size, self.max_delivery_bytes)
            outcome.refused.append(refusal)
            return
        outcome.deliveries.extend(deliveries)


def delivery_size(d: Delivery) -> int:
    """Bytes of a delivery as librdkafka counts them against ``message.max.bytes``: key, value
    and headers (names and values)."""
    headers = sum(len(name.encode()) + len(value) for name, value in d.headers)
    return len(d.key or b"") + len(d.value or b"") + headers


def _deliveries(
    active: ActiveGrant,
    record: SourceRecord,
    op: str,
    after: Mapping[str, Any] | None,
    ts_ms: int,
    event_id: str,
    provider: str,
    projected: bytes | None = None,
) -> list[Delivery]:
    """The delivery of a change to one grant (and a tombstone after a delete); ``projected``:
    the record's ``after`` already projected and encoded for the grant."""
    plan, grant, envelope = active.plan, active.plan.grant, active.envelope
    # Per grant: one change's copies under two grants cannot be joined by these.
    event_token = plan.token("event", event_id)
    position_token = plan.token("position", record.position)
    fields = {
        "op": op,
        "provider": provider,
        "ts_ms": ts_ms,
        "event_id": event_token,
        "grant_id": grant.id,
        "source_position": position_token,
    }
    if after is not None and projected is None:
        projected = envelope.encode_after(plan.project(after))
    value = envelope.encode(fields, None if after is None else projected)
    key = plan.key(record.key)
    # What a consumer needs travels in the value; headers cost about 1 µs each per produce call
    # plus the broker's work, so only a tombstone (which has no value) carries them.
    out = [Delivery(grant.id, grant.consumer, active.topic, key, value, (), ts_ms)]
    if op == "d" and key is not None:
        # Delivery topics are compacted: the tombstone lets compaction drop the key entirely.
        headers = tombstone_headers(grant.id, event_token, position_token)
        out.append(Delivery(grant.id, grant.consumer, active.topic, key, None, headers, ts_ms))
    return out


def tombstone_headers(grant_id: str, event_id: str, position: str) -> tuple[tuple[str, bytes], ...]:
    """A tombstone's headers: what its delivery's value says, for a reader that sees only it."""
    return (
        (GRANT_HEADER, grant_id.encode()),
        (EVENT_HEADER, event_id.encode()),
        (SOURCE_HEADER, position.encode()),
    )


def _check_change(
    route: EntryRoute, change: Mapping[str, Any], key: bytes | None
) -> tuple[tuple[str, tuple[Mapping[str, Any], ...]] | None, str | None]:
    """``((reason, errors), department)``; the first part is ``None`` for a valid change."""
    entry = route.entry
    source = change.get("source")
    department = source.get("department") if isinstance(source, Mapping) else None
    op, after = change.get("op"), change.get("after")
    if op not in OPS or not isinstance(source, Mapping) or "event_id" not in change:
        return ("schema_mismatch", (_error("(record)", "not a change envelope"),)), department
    if department != entry.provider:
        message = f"published by {department!r}, but {entry.id} is provided by {entry.provider!r}"
        return ("not_provider", (_error("source.department", message),)), department
    if op == "d":
        if after is not None:
            return ("schema_mismatch", (_error("after", "a delete carries no record"),)), department
        if not key:
            return ("no_key", (_error("(key)", "a delete needs the record's key"),)), department
        return None, department
    if not isinstance(after, Mapping):
        return ("schema_mismatch", (_error("after", f"op {op} needs a record"),)), department
    unknown = set(after) - set(route.fields)
    missing = route.required - set(after)
    if unknown or missing:
        errors = [_error(n, f"not a field of {entry.id}") for n in sorted(unknown)]
        errors += [_error(n, "required field missing") for n in sorted(missing)]
        return ("schema_mismatch", tuple(errors)), department
    errors = [
        _error(name, problem, rule)
        for name, rule, check in route.checks
        if (problem := check(after.get(name))) is not None
    ]
    if errors:
        return ("rule_violation", tuple(errors)), department
    expected = record_key(entry, after).encode("utf-8")
    if key != expected:
        shown = key.decode("utf-8", "replace") if key is not None else None
        if shown is not None and len(shown) > 200:  # the message goes into an audit event
            shown = f"{shown[:200]}... ({len(key or b''):,} bytes)"
        message = f"Kafka key {shown!r} is not the record's business key"
        return ("key_mismatch", (_error("(key)", message),)), department
    return None, department


def _reject(reason: str, message: str, entry: str | None = None) -> Rejection:
    return Rejection(reason, (_error("(record)", message),), entry, None)


def _error(field_name: str, message: str, rule: str | None = None) -> dict[str, Any]:
    out = {"field": field_name, "message": message}
    if rule:
        out["rule"] = rule
    return out


def _reason(code: str | None) -> str:
    return {"BAD_FRAMING": "bad_framing", "BAD_AVRO": "bad_avro"}.get(code or "", "bad_avro")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)


def _millis(value: Any) -> int:
    """Epoch milliseconds of a timestamp-millis value, exactly (``timestamp() * 1000`` is a float
    and loses a millisecond on about one value in ten)."""
    if isinstance(value, int):
        return value
    return int((value - _EPOCH) // _MILLISECOND)
