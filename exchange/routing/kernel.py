"""The compiled routing kernel's Python face: what it is told about an entry, and when.

The kernel (``kernel/src/lib.rs``, built into :mod:`exchange._kernel` by ``pip install``) does
the per-record work of the live stream and backfills in Rust: decode a change, check it, and for
each grant filter, project, mask, hash the key and encode the delivery. Measured on the 3-grant
benchmark entry it costs about 4 µs per record where the Python core costs about 150.

It is a fast path only. The Python core (:mod:`exchange.routing.core`) stays the definition: the
kernel is given, per entry and writer schema, a spec compiled here from the same catalog entry,
grants and delivery encoders, and for any record it is not certain about (every rejection, a
value it cannot render exactly as Python does) it returns the record's index and the core routes
it. What cannot be compiled at all (a field type, mask or pattern the kernel does not handle) is
left to the core for every record of that schema, with the reason logged once. The unit tests
compare the two paths byte for byte on random records.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import exchange._kernel as _kernel
from exchange.kafka.envelope import EnvelopeEncoder
from exchange.kafka.errors import RegistryError
from exchange.kafka.wire import SchemaLookup, WireFormatError, value_subject
from exchange.routing.core import ActiveGrant, EntryRoute
from exchange.routing.state import slot_of
from exchange.routing.transform import _text
from exchange.rules.rules import (
    CitizenIdRule,
    CreditCodeRule,
    PatternRule,
    RangeRule,
    RequiredRule,
    Rule,
)

__all__ = [
    "Deliveries",
    "EntryKernel",
    "Kernels",
    "NotCompiledError",
    "compile_reader",
    "kernel_input_limit",
    "kernel_pattern",
    "partition_runs",
]

log = logging.getLogger(__name__)

EntryKernel = _kernel.EntryKernel
Deliveries = _kernel.Deliveries
Feed = _kernel.Feed
partition_runs = _kernel.partition_runs
OPS = ("c", "u", "d", "r")
#: Field kinds whose text (``_text``, ``key_text``) the kernel renders as Python does.
TEXT_KINDS = frozenset({"string", "int", "long", "boolean", "date", "decimal"})
KEY_KINDS = frozenset({"string", "int", "long", "date", "decimal"})
_PRIMITIVES = frozenset({"string", "int", "long", "boolean", "float", "double"})
#: Integer bounds beyond any int or decimal the kernel reads (i128 holds them).
_BOUND = 2**120


class NotCompiledError(Exception):
    """What the kernel cannot route for a schema; the Python core routes it."""


Kind = tuple[str, int, int]  # (kind, decimal precision, decimal scale)


def compile_reader(
    route: EntryRoute, grants: Sequence[ActiveGrant], writer: Mapping[str, Any]
) -> tuple[Any, ...]:
    """The kernel's spec for records of ``route``'s entry written with schema ``writer``,
    delivered to ``grants`` (in the kernel's grant order). :class:`NotCompiledError` says why
    not."""
    envelope, after = _envelope(writer)
    fields = after.get("fields", [])
    names = [f["name"] for f in fields]
    unknown = set(names) - set(route.fields)
    missing = route.required - set(names)
    if unknown or missing:
        raise NotCompiledError("the writer's fields do not match the entry (all are rejected)")
    kinds = [_field_kind(f) for f in fields]
    index = {name: i for i, name in enumerate(names)}
    checks = [
        _check(rule, index.get(name, -1), kinds)
        for name, spec in route.entry.fields.items()
        for rule in spec.rules
    ]
    key = []
    for name in route.entry.key:
        if name not in index or kinds[index[name]][0][0] not in KEY_KINDS:
            raise NotCompiledError(f"key field {name} is missing or not text, a number or a date")
        key.append(index[name])
    field_spec = [
        (kind, nullable, precision, scale) for (kind, precision, scale), nullable in kinds
    ]
    grant_specs = [_grant(active, index, kinds, route.entry.provider) for active in grants]
    return (envelope, field_spec, checks, key, route.entry.provider, grant_specs)


def _envelope(writer: Mapping[str, Any]) -> tuple[list[tuple[str, list[int], int, int]], Any]:
    """The change envelope's parts in the writer's order, and its ``after`` record schema."""
    out: list[tuple[str, list[int], int, int]] = []
    after: Any = None
    for f in writer.get("fields", []):
        name, ftype = f["name"], f["type"]
        if name == "op" and isinstance(ftype, dict) and ftype.get("type") == "enum":
            symbols = ftype["symbols"]
            out.append(("op", [OPS.index(s) if s in OPS else -1 for s in symbols], 0, 0))
        elif name == "after" and isinstance(ftype, list) and len(ftype) == 2 and "null" in ftype:
            after = ftype[1 - ftype.index("null")]
            if not isinstance(after, dict) or after.get("type") != "record":
                raise NotCompiledError("after is not a nullable record")
            out.append(("after", [], ftype.index("null"), 0))
        elif name == "source" and isinstance(ftype, dict) and ftype.get("type") == "record":
            source = [s["name"] for s in ftype["fields"]]
            if "department" not in source or any(s["type"] != "string" for s in ftype["fields"]):
                raise NotCompiledError("source is not a record of strings with a department")
            out.append(("source", [], len(source), source.index("department")))
        elif (
            name == "ts_ms"
            and _plain(ftype) == "long"
            and _logical(ftype)
            in (
                None,
                "timestamp-millis",
            )
        ):
            out.append(("ts_ms", [], 0, 0))
        elif name == "event_id" and _plain(ftype) == "string" and _logical(ftype) is None:
            out.append(("event_id", [], 0, 0))
        else:
            raise NotCompiledError(f"envelope field {name} of type {ftype!r}")
    if sorted(p[0] for p in out) != sorted(["op", "after", "source", "ts_ms", "event_id"]):
        raise NotCompiledError("the envelope lacks op, after, source, ts_ms or event_id")
    return out, after


def _plain(ftype: Any) -> Any:
    return ftype.get("type") if isinstance(ftype, dict) else ftype


def _logical(ftype: Any) -> Any:
    return ftype.get("logicalType") if isinstance(ftype, dict) else None


def _field_kind(field: Mapping[str, Any]) -> tuple[Kind, int]:
    """``((kind, precision), nullable)``; nullable 0 no, 1 ``["null", T]``, 2 ``[T, "null"]``."""
    ftype = field["type"]
    nullable = 0
    if isinstance(ftype, list):
        if len(ftype) != 2 or "null" not in ftype:
            raise NotCompiledError(f"field {field['name']}: a union other than [null, T]")
        nullable = 1 if ftype[0] == "null" else 2
        ftype = ftype[1 - ftype.index("null")]
    return _kind(field["name"], ftype), nullable


def _kind(name: str, ftype: Any) -> Kind:
    plain, logical = _plain(ftype), _logical(ftype)
    if logical is None and plain in _PRIMITIVES:
        return (str(plain), 0, 0)
    if logical == "date" and plain == "int":
        return ("date", 0, 0)
    if logical == "decimal" and plain == "bytes":
        return ("decimal", int(ftype["precision"]), int(ftype.get("scale", 0)))
    raise NotCompiledError(f"field {name} of type {ftype!r}")


def _check(
    rule: Rule, field: int, kinds: Sequence[tuple[Kind, int]]
) -> tuple[int, str, str | None, int | None, int | None, float | None, float | None]:
    kind, _precision, scale = kinds[field][0] if field >= 0 else ("string", 0, 0)
    if isinstance(rule, RequiredRule):
        return (field, "required", None, None, None, None, None)
    if isinstance(rule, CitizenIdRule | CreditCodeRule | PatternRule):
        if kind != "string":
            return (field, "absent", None, None, None, None, None)
        if isinstance(rule, PatternRule):
            if not kernel_pattern(rule.regex):
                raise NotCompiledError(f"pattern {rule.regex!r} (not in the kernel's safe subset)")
            return (field, "pattern", rule.regex, None, None, None, None)
        return (field, rule.name, None, None, None, None, None)
    assert isinstance(rule, RangeRule)
    if kind in ("int", "long", "decimal"):
        shift = Decimal(10) ** (scale if kind == "decimal" else 0)
        lo = None if rule.min is None else max(-_BOUND, math.ceil(rule.min * shift))
        hi = None if rule.max is None else min(_BOUND, math.floor(rule.max * shift))
        return (field, "range", None, lo, hi, None, None)
    if kind in ("float", "double"):
        flo = None if rule.min is None else float(rule.min)
        fhi = None if rule.max is None else float(rule.max)
        return (field, "float_range", None, None, None, flo, fhi)
    return (field, "absent", None, None, None, None, None)


#: Escapes whose meaning is the same in Python's ``re`` and Rust's ``regex`` (``\\w``, ``\\s``
#: and ``\\b`` differ in which Unicode characters they take).
_SAFE_ESCAPE = re.compile(r"\\(?:[dD]|[^A-Za-z0-9])")
#: Syntax one of the two reads differently: inline flags and named groups, nested classes and
#: class set operations (``[[:alpha:]]``, ``&&``, ``--``, ``~~`` are literals in Python).
_UNSAFE = re.compile(r"\(\?(?!:)|\[\[|\[:|&&|--|~~")


def kernel_pattern(regex: str) -> bool:
    """Whether Rust's ``regex`` matches exactly what Python's ``re.fullmatch`` does for this
    pattern: literals, classes, ``\\d``, ``.``, anchors, groups, alternation and quantifiers."""
    if _UNSAFE.search(regex):
        return False
    rest = _SAFE_ESCAPE.sub("", regex)
    return "\\" not in rest


def _grant(
    active: ActiveGrant, index: Mapping[str, int], kinds: Sequence[tuple[Kind, int]], provider: str
) -> tuple[Any, ...]:
    plan = active.plan
    out = []
    for field in active.envelope.after_schema["fields"]:
        name = field["name"]
        src = index.get(name, -1)
        mask = plan.masks.get(name)
        kind = kinds[src][0] if src >= 0 else ("string", 0, 0)
        if mask is None:
            if not isinstance(field["type"], list):
                raise NotCompiledError(f"delivery field {name} is not optional")
            delivered = [t for t in field["type"] if t != "null"]
            if src >= 0 and (len(delivered) != 1 or _kind(name, delivered[0]) != kind):
                raise NotCompiledError(f"field {name} is delivered with another type than written")
            out.append((src, "copy", 0, 0))
            continue
        if mask.kind != "redact" and kind[0] not in TEXT_KINDS:
            raise NotCompiledError(f"mask on field {name} of kind {kind[0]}")
        out.append((src, mask.kind, mask.first, mask.last))
    filters = []
    for p in plan.grant.row_filter:
        src = index.get(p.field, -1)
        if src >= 0 and kinds[src][0][0] not in TEXT_KINDS:
            raise NotCompiledError(f"row filter on field {p.field} of kind {kinds[src][0][0]}")
        if p.op == "prefix":
            filters.append((src, "prefix", [str(p.values[0])]))
        else:
            filters.append((src, "in", sorted({_text(v) for v in p.values})))
    template = _template(active.envelope, provider, plan.grant.id)
    return (
        out,
        filters,
        plan.hashed_key,
        plan.salt,
        template,
        plan.grant.id,
        active.partitions,
        slot_of(active.key),
    )


def _template(encoder: EnvelopeEncoder, provider: str, grant_id: str) -> list[tuple[str, bytes]]:
    """The delivery envelope as constant bytes and the parts written per record."""
    parts: list[tuple[str, bytes]] = [("const", encoder.header)]
    for name, write in encoder.writers():
        if name == "after":
            parts.append(("after", b""))
        elif write is None:
            raise NotCompiledError(f"delivery field {name} has no writer")
        elif name == "op":
            parts.append(("op", b"".join(write(op) for op in OPS)))
        elif name == "provider":
            parts.append(("const", write(provider)))
        elif name == "grant_id":
            parts.append(("const", write(grant_id)))
        elif name == "ts_ms":
            parts.append(("ts", b""))
        elif name == "event_id":
            parts.append(("event_id", b""))
        elif name == "source_position":
            parts.append(("position", b""))
        else:
            raise NotCompiledError(f"delivery field {name}")
    merged: list[tuple[str, bytes]] = []
    for part in parts:
        if part[0] == "const" and merged and merged[-1][0] == "const":
            merged[-1] = ("const", merged[-1][1] + part[1])
        else:
            merged.append(part)
    return merged


class Kernels:
    """One :class:`EntryKernel` per source topic, made again when its entry or grants change.

    Readers (one per writer schema id) are added before a batch is routed: :meth:`missing`
    names the ids a batch needs, :meth:`fetch` (the I/O edge, in an executor) asks the registry,
    :meth:`compile` makes the readers. Routing itself never waits on the registry.
    """

    def __init__(self, lookup: SchemaLookup, max_delivery_bytes: int = 1_000_000) -> None:
        self.lookup = lookup
        #: ``router.max_delivery_bytes``: records that could come near it go to the core.
        self.max_delivery_bytes = max_delivery_bytes
        self._by_topic: dict[str, _Compiled] = {}
        #: Why a schema is left to the Python core, logged once per schema id and grant set.
        self.not_compiled: dict[tuple[str, int], str] = {}

    def get(self, topic: str, route: EntryRoute) -> _Compiled:
        found = self._by_topic.get(topic)
        if found is None or found.route is not route or found.grant_map is not route.grants:
            found = _Compiled(
                route,
                route.grants,
                list(route.grants.values()),
                kernel_input_limit(route, self.max_delivery_bytes),
            )
            self._by_topic[topic] = found
        return found

    def missing(self, topic: str, route: EntryRoute, messages: list[Any]) -> list[int]:
        """Schema ids of ``messages`` the entry's kernel has no reader for."""
        return list(self.get(topic, route).kernel.missing(messages))

    def fetch(self, ids: list[int]) -> None:
        """The I/O edge (blocking, run in an executor): fetch these writer schemas. An id the
        registry does not have is noted as such; :class:`~exchange.kafka.errors.RegistryError`
        for anything else (the registry is down: the caller tries the batch again later)."""
        for schema_id in ids:
            try:
                self.lookup.codec(schema_id)
                self.lookup.subjects(schema_id)
            except RegistryError as exc:
                if exc.http_status != 404:
                    raise
            except WireFormatError:
                pass  # a schema fastavro cannot parse: the core rejects its records

    def compile(self, topic: str, route: EntryRoute, ids: list[int]) -> None:
        """Readers for fetched schema ids; those the kernel cannot route (or the registry does
        not know) are left to the core, the reason logged once."""
        compiled = self.get(topic, route)
        for schema_id in ids:
            codec = self.lookup.cached(schema_id)
            if codec is None or not self.lookup.registered_under(schema_id, value_subject(topic)):
                # Unknown, or another subject's schema: the core rejects its records.
                compiled.kernel.add_reader(schema_id, None)
                continue
            try:
                spec = compile_reader(route, compiled.grants, codec.parsed)
                compiled.kernel.add_reader(schema_id, spec)
            except (NotCompiledError, ValueError) as exc:
                compiled.kernel.add_reader(schema_id, None)
                reason = str(exc)
                if self.not_compiled.get((topic, schema_id)) != reason:
                    self.not_compiled[topic, schema_id] = reason
                    log.warning(
                        "%s schema %d is routed by the Python core, not the kernel: %s",
                        topic,
                        schema_id,
                        reason,
                    )


#: What a delivery can add to its record, besides the per-field growth below: the grant id
#: (63 characters at most), provider (64) and source position (a topic name of at most 249
#: characters and two numbers) in the envelope, and a hashed key (64 characters).
GROWTH_BYTES = 2048
#: Per field of the entry: a masked value's text is at most a 64-character digest for the
#: kinds the kernel masks (text, numbers, dates, decimals), plus its length and union index.
GROWTH_PER_FIELD_BYTES = 80


def kernel_input_limit(route: EntryRoute, max_delivery_bytes: int) -> int:
    """The longest record (key and value) whose deliveries cannot exceed
    ``max_delivery_bytes``: longer ones go to the core, which checks each delivery's exact
    size. Records that large are rare; the kernel never has to take a delivery back."""
    growth = GROWTH_BYTES + GROWTH_PER_FIELD_BYTES * len(route.fields)
    return max(0, max_delivery_bytes - growth)


class _Compiled:
    def __init__(
        self,
        route: EntryRoute,
        grant_map: Mapping[str, ActiveGrant],
        grants: list[ActiveGrant],
        max_input: int,
    ) -> None:
        self.route = route
        #: The route's grants when this was made (the identity tells a change).
        self.grant_map = grant_map
        #: The kernel's grant order.
        self.grants = grants
        self.kernel = EntryKernel(len(grants), max_input)
