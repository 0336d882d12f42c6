"""The compiled kernel against the Python core: the same deliveries, byte for byte.

Random records of every sample entry (every field type the sample schemas use), mostly valid
(values drawn from the entry's own rules, so the kernel routes them) and some broken in every way
the core rejects (bad bytes, trailing bytes, unknown schema ids, wrong keys, departments and
values), are routed both ways under three grants per entry that use every mask, row filters and
hashed keys. The kernel's deliveries, receipts and rejections must equal the core's.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import string
import zlib
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exchange.catalog.avro import envelope_schema, load_schema
from exchange.catalog.keys import record_key
from exchange.catalog.model import CatalogEntry
from exchange.grants.model import Actor
from exchange.grants.rules import new_grant
from exchange.kafka.envelope import EnvelopeEncoder
from exchange.kafka.errors import RegistryError
from exchange.kafka.wire import AvroCodec, SchemaLookup
from exchange.routing.backfill import Handover
from exchange.routing.batch import Routed, route_backfill, route_live
from exchange.routing.core import (
    ActiveGrant,
    Delivery,
    EntryRoute,
    Router,
    SourceRecord,
    delivery_size,
)
from exchange.routing.kernel import (
    GROWTH_BYTES,
    GROWTH_PER_FIELD_BYTES,
    Kernels,
    compile_reader,
    kernel_pattern,
)
from exchange.routing.receipts import ReceiptDigest, receipt_digest
from exchange.routing.salts import GrantSalts
from exchange.routing.state import KeyState
from exchange.routing.transform import DeliveryPlan, delivery_schema
from exchange.rules.checksums import CREDIT_CODE_ALPHABET, make_citizen_id, make_credit_code
from exchange.rules.rules import (
    CitizenIdRule,
    CreditCodeRule,
    PatternRule,
    RangeRule,
    RequiredRule,
)
from tests.conftest import ROOT
from tests.unit.grants.fixtures import T0, request

#: Salts as the router derives them, from a test secret.
SALTS = GrantSalts(b"test salt secret, 32 bytes long!")

SCHEMA_ID = 7
UNKNOWN_ID = 99
REGIONS = ["140602", "140603", "110105"]


@dataclass
class Message:
    """A confluent-kafka ``Message`` as the kernel reads it (methods, not attributes)."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


@cache
def catalog() -> dict[str, tuple[CatalogEntry, dict[str, Any]]]:
    """Every sample catalog entry with its record schema."""
    out = {}
    for file in sorted((ROOT / "config/catalog").glob("*.yaml")):
        for raw in yaml.safe_load(file.read_text(encoding="utf-8"))["entries"]:
            entry = CatalogEntry.model_validate(raw)
            out[entry.id] = (entry, load_schema(ROOT / "schemas/avro" / entry.schema_file))
    return out


@cache
def setup(entry_id: str) -> Setup:
    """One per entry for the whole run: building the grants costs more than routing."""
    return Setup(entry_id)


class Setup:
    """One entry routed by a core and by the kernel, with three grants."""

    def __init__(self, entry_id: str) -> None:
        self.entry, self.schema = catalog()[entry_id]
        self.topic = f"src.{entry_id}"
        envelope = envelope_schema(
            entry_id, self.schema, load_schema(ROOT / "schemas/avro/exchange/envelope.avsc")
        )
        self.source = AvroCodec(SCHEMA_ID, copy.deepcopy(envelope))

        def fetch(schema_id: int) -> dict[str, Any]:
            if schema_id != SCHEMA_ID:
                raise RegistryError("no such schema", http_status=404, error_code=40403)
            return copy.deepcopy(envelope)

        self.lookup = SchemaLookup(fetch)
        self.core = Router(self.lookup)
        self.core.set_entry(self.topic, EntryRoute(self.entry, self.schema))
        self.grants = [self._grant(i, terms) for i, terms in enumerate(grant_terms(self))]
        self.core.set_grants(self.topic, self.grants)
        self.kernels = Kernels(self.lookup)

    def _grant(self, i: int, terms: dict[str, Any]) -> ActiveGrant:
        consumer = ["mzj", "rsj", "dsj"][i]
        g = new_grant(
            f"g{i}",
            request(consumer=consumer, entry=self.entry.id, **terms),
            Actor(department=consumer, person="王"),
            T0,
        ).model_copy(update={"state": "approved"})
        t = g.terms()
        schema = delivery_schema(self.entry, self.schema, t)
        return ActiveGrant(
            DeliveryPlan.build(t, self.entry, SALTS.salt(t.id)),
            f"dlv.{consumer}.{self.entry.id}",
            EnvelopeEncoder(100 + i, schema),
            partitions=3 + i,
        )

    def kinds(self) -> dict[str, str]:
        out = {}
        for f in self.schema["fields"]:
            ftype = f["type"]
            inner = next(t for t in ftype if t != "null") if isinstance(ftype, list) else ftype
            kind = inner.get("logicalType") or inner["type"] if isinstance(inner, dict) else inner
            out[f["name"]] = kind
        return out

    def resolve(self, messages: list[Any]) -> None:
        route = self.core.routes[self.topic]
        ids = self.kernels.missing(self.topic, route, messages)
        self.kernels.fetch(ids)
        self.kernels.compile(self.topic, route, ids)


def grant_terms(s: Setup) -> list[dict[str, Any]]:
    """Three grants using every mask kind, row filters and a hashed key."""
    kinds = s.kinds()
    names = [f["name"] for f in s.schema["fields"]]
    key = s.entry.key
    text = [n for n in names if kinds[n] == "string" and n not in key]
    dates = [n for n in names if kinds[n] == "date"]
    masks: dict[str, Any] = {}
    kinds_of_mask = [{"keep": {"first": 2, "last": 1}}, "hash", "redact", "none"]
    for name, mask in zip(text, kinds_of_mask, strict=False):
        masks[name] = mask
    for name in dates[:1]:
        masks[name] = {"keep": {"first": 4, "last": 0}}
    filtered = [k for k in key]
    row_filter: dict[str, Any] = {}
    if "region_code" in names:
        filtered.append("region_code")
        row_filter["region_code"] = {"in": REGIONS[:2]}
    numbers = [n for n in names if kinds[n] in ("int", "long", "double", "decimal")]
    filtered += [n for n in names if n not in filtered][:3] + numbers[:1]
    return [
        {"fields": names, "masks": masks},
        {"fields": list(dict.fromkeys(filtered)), "row_filter": row_filter},
        {
            "fields": names,
            "masks": {key[0]: "hash", **({text[0]: "none"} if text else {})},
            **(
                {"row_filter": {"region_code": {"prefix": "1406"}}}
                if "region_code" in names
                else {}
            ),
        },
    ]


# -- random records ----------------------------------------------------------------------------


def _value(s: Setup, name: str, field: dict[str, Any], valid: bool) -> st.SearchStrategy[Any]:
    rules = s.entry.fields[name].rules if name in s.entry.fields else ()
    ftype = field["type"]
    nullable = isinstance(ftype, list)
    inner = next(t for t in ftype if t != "null") if nullable else ftype
    for rule in rules:
        if isinstance(rule, CitizenIdRule):
            base: st.SearchStrategy[Any] = st.builds(
                make_citizen_id,
                st.sampled_from(REGIONS),
                st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)),
                st.integers(0, 999),
            )
            break
        if isinstance(rule, CreditCodeRule):
            base = st.builds(
                lambda a, b, c: make_credit_code(a + b + c),
                st.text(CREDIT_CODE_ALPHABET, min_size=2, max_size=2),
                st.text(string.digits, min_size=6, max_size=6),
                st.text(CREDIT_CODE_ALPHABET, min_size=9, max_size=9),
            )
            break
        if isinstance(rule, PatternRule):
            base = st.from_regex(rule.regex, fullmatch=True)
            if name == "region_code":
                base = st.sampled_from(REGIONS) | base
            break
        if isinstance(rule, RangeRule):
            base = _number(inner, rule, valid)
            break
    else:
        base = _by_type(inner)
    if valid and any(isinstance(rule, RequiredRule) for rule in rules):
        return base.filter(lambda v: v != "")
    return (st.none() | base) if nullable else base


def _number(inner: Any, rule: RangeRule, valid: bool) -> st.SearchStrategy[Any]:
    """Numbers around the range; with ``valid``, strictly inside it (a float equal to a bound is
    left to the core by design)."""
    lo = float(rule.min) if rule.min is not None else -1e6
    hi = float(rule.max) if rule.max is not None else 1e6
    if isinstance(inner, dict) and inner.get("logicalType") == "decimal":
        scale = inner.get("scale", 0)
        slack = 0 if valid else 5
        return st.integers(int(lo * 10**scale) - slack, int(hi * 10**scale) + slack).map(
            lambda n: Decimal(n).scaleb(-scale)
        )
    if valid:
        return st.floats(lo, hi, exclude_min=True, exclude_max=True)
    return st.floats(lo - 1, hi + 1) | st.sampled_from([lo, hi, 0.0, -0.0])


def _by_type(inner: Any) -> st.SearchStrategy[Any]:
    logical = inner.get("logicalType") if isinstance(inner, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else inner
    if logical == "date":
        return st.dates()
    if logical == "decimal":
        scale, precision = inner.get("scale", 0), inner["precision"]
        return st.integers(-(10**precision) + 1, 10**precision - 1).map(
            lambda n: Decimal(n).scaleb(-scale)
        )
    return {
        "string": st.text(max_size=12) | st.sampled_from(["", '"\\\n\t\x01', "张三", "𝌆"]),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "boolean": st.booleans(),
        "double": st.floats(allow_nan=True),
        "float": st.floats(width=32),
    }[kind]


Mutation = Callable[[dict[str, Any]], Any]


@st.composite
def messages(draw: Any, s: Setup, valid: bool = False) -> list[Message]:
    """A batch of 1-12 source records of one partition, mostly valid (``valid``: all)."""
    out = []
    for offset in range(draw(st.integers(1, 12))):
        row = {f["name"]: draw(_value(s, f["name"], f, valid)) for f in s.schema["fields"]}
        key: bytes | None = record_key(s.entry, row).encode()
        op = draw(st.sampled_from(["c", "u", "r", "u", "d"]))
        department = s.entry.provider
        broken = 0 if valid else draw(st.integers(0, 11))
        if broken == 1:
            key = draw(st.sampled_from([None, b"", b"x"]))
        elif broken == 2:
            department = "someone_else"
        elif broken == 3:
            name = draw(st.sampled_from(sorted(s.entry.fields)))
            field = next(f for f in s.schema["fields"] if f["name"] == name)
            row[name] = draw(_by_type(_inner(field["type"])))
        change = {
            "op": op,
            "after": None if op == "d" else row,
            "source": {"department": department, "system": "s", "connector": "c", "position": "p"},
            "ts_ms": draw(st.integers(-(2**40), 2**42)),
            "event_id": draw(st.text(max_size=20)),
        }
        value: bytes | None = s.source.encode(change)
        assert value is not None
        if broken == 4:
            value = value + b"\x00"
        elif broken == 5:
            value = value[: draw(st.integers(0, len(value) - 1))]
        elif broken == 6:
            value = value[:1] + UNKNOWN_ID.to_bytes(4, "big") + value[5:]
        elif broken == 7:
            value = None  # a source tombstone
        elif broken == 8:
            at = draw(st.integers(5, len(value) - 1))
            value = value[:at] + bytes([draw(st.integers(0, 255))]) + value[at + 1 :]
        out.append(Message(s.topic, 0, offset, key, value))
    return out


def _inner(ftype: Any) -> Any:
    return next(t for t in ftype if t != "null") if isinstance(ftype, list) else ftype


# -- the comparison ----------------------------------------------------------------------------


class AllLive(Handover):
    """Every grant is live on every partition (no backfills)."""

    def live_span(
        self, topic: str, partition: int, first: int, last: int, grant_ids: Iterable[str]
    ) -> dict[str, int]:
        return dict.fromkeys(grant_ids, 0)


Delivered = list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]]


def by_core(s: Setup, batch: list[Message]) -> tuple[dict[str, Delivered], list[tuple[int, str]]]:
    out: dict[str, Delivered] = {g.plan.grant.id: [] for g in s.grants}
    rejected = []
    for m in batch:
        record = SourceRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        outcome = s.core.route(record)
        if outcome.rejection is not None:
            rejected.append((m.offset(), outcome.rejection.reason))
        for d in outcome.deliveries:
            out[d.grant_id].append((d.key, d.value, tuple(d.headers)))
    return out, rejected


def by_kernel(routed: Routed) -> dict[str, Delivered]:
    out: dict[str, Delivered] = {}
    for stream in routed.streams:
        items = out.setdefault(stream.grant.plan.grant.id, [])
        d = stream.deliveries
        keys, values, by_index = d.keys(), d.values(), d.headers()
        headers = [tuple(tuple(h) for h in by_index.get(i, ())) for i in range(len(keys))]
        items.extend(zip(keys, values, headers, strict=True))
        for key, partition in zip(keys, d.partitions(), strict=True):
            # As librdkafka's consistent_random partitioner places it.
            assert partition == (zlib.crc32(key) % stream.grant.partitions if key else -1)
        for _p, first, last, count, delivered, feed, ts in stream.receipts:
            assert count == len(keys) and first <= last
            assert delivered == sum(v is not None for v in values) == len(ts)
            expected = receipt_digest(zip(keys, values, strict=True))
            assert len(feed) == count
            digest = ReceiptDigest()
            digest.update(feed)
            assert digest.hexdigest() == expected
    for _record, _entry, d in routed.deliveries:
        out.setdefault(d.grant_id, []).append((d.key, d.value, tuple(d.headers)))
    return out


def rejected(routed: Routed) -> list[tuple[int, str]]:
    return [
        (int(str(h.details["position"]).rsplit("/", 1)[1]), str(h.details["reason"]))
        for h in routed.happenings
    ]


ENTRY_IDS = sorted(catalog())


@pytest.mark.parametrize("entry_id", ENTRY_IDS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_kernel_delivers_what_the_core_does(entry_id: str, data: Any) -> None:
    s = setup(entry_id)
    batch = data.draw(messages(s))
    s.resolve(batch)
    routed = route_live(
        s.core, s.kernels, AllLive(), [(s.topic, 0, 0, len(batch), batch)], "t", "dlq"
    )
    want, want_rejected = by_core(s, batch)
    got = by_kernel(routed)
    for grant_id, items in want.items():
        assert got.get(grant_id, []) == items, grant_id
    assert sorted(rejected(routed)) == sorted(want_rejected)
    assert routed.offsets == {(s.topic, 0): len(batch)}


@pytest.mark.parametrize("entry_id", ENTRY_IDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_records_of_every_sample_entry_are_routed_by_the_kernel(
    entry_id: str, data: Any
) -> None:
    s = setup(entry_id)
    batch = data.draw(messages(s, valid=True))
    assert not by_core(s, batch)[1]  # the generator's valid records are valid
    s.resolve(batch)
    compiled = s.kernels.get(s.topic, s.core.routes[s.topic])
    starts = [{0: 0} for _ in compiled.grants]
    missing, fallback, _grants, _offsets, _c, _l = compiled.kernel.route(
        s.topic, batch, starts, 739_000
    )
    assert not s.kernels.not_compiled
    assert missing == [] and fallback == []


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_each_grant_gets_records_from_its_start_offset_only(data: Any) -> None:
    s = setup("gongan.resident_population")
    rows = data.draw(messages(s, valid=True))
    batch = [Message(s.topic, p, o, m.key(), m.value()) for o, m in enumerate(rows) for p in (0, 1)]
    s.resolve(batch)
    compiled = s.kernels.get(s.topic, s.core.routes[s.topic])
    starts = [{0: 0, 1: 0}, {}, {1: 3}]
    _missing, _fallback, grants, offsets, _c, _l = compiled.kernel.route(
        s.topic, batch, starts, 739_000
    )
    assert sorted(offsets) == [(0, len(rows)), (1, len(rows))]
    assert sum(r[3] for r in grants[0][1]) >= len(batch)  # both partitions, every record
    assert len(grants[1][0]) == 0  # no deliveries
    assert all(r[0] == 1 and r[1] >= 3 for r in grants[2][1])


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_backfill_routes_only_its_grants(data: Any) -> None:
    s = setup("gongan.resident_population")
    batch = data.draw(messages(s, valid=True))
    s.resolve(batch)
    routed = route_backfill(s.core, s.kernels, s.topic, batch, {"g1"}, "t", "dlq")
    assert {stream.grant.plan.grant.id for stream in routed.streams} <= {"g1"}
    assert not routed.dead and not routed.happenings and not routed.deliveries


def test_what_the_kernel_cannot_route_is_left_to_the_core() -> None:
    s = setup("gongan.resident_population")
    writer = copy.deepcopy(s.source.parsed)
    after = next(f for f in writer["fields"] if f["name"] == "after")
    record = next(t for t in after["type"] if t != "null")
    record["fields"].append({"name": "extra", "type": {"type": "array", "items": "string"}})
    with pytest.raises(Exception, match="do not match the entry"):
        compile_reader(s.core.routes[s.topic], s.grants, writer)


@pytest.mark.parametrize(
    ("pattern", "safe"),
    [
        (r"^\d{6}$", True),
        (r"^(存续|在业|注销|吊销|迁出)$", True),
        (r"^\d{12}[A-Z]{2}\d{5}[A-Z]\d{8}$", True),
        (r"^[a-z]+\.(?:cn|com)$", True),
        (r"^\w+$", False),  # Unicode word characters differ between re and regex
        (r"^\s$", False),
        (r"(?i)abc", False),
        (r"[[:alpha:]]", False),
        (r"[a&&b]", False),
        (r"(a)\1", False),
    ],
)
def test_only_patterns_both_engines_read_alike_go_to_the_kernel(pattern: str, safe: bool) -> None:
    assert kernel_pattern(pattern) is safe


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_padded_numbers_are_left_to_the_strict_core(data: Any) -> None:
    # The envelope's first field is the op enum: a one-byte number, padded to two here
    # (0x82 0x00 for 0x02), which lax readers take as the same number.
    s = setup("gongan.resident_population")
    batch = data.draw(messages(s, valid=True))
    padded = []
    for m in batch:
        value = m.value()
        assert value is not None and value[5] < 0x80
        value = value[:5] + bytes([value[5] | 0x80, 0]) + value[6:]
        padded.append(Message(m.topic(), m.partition(), m.offset(), m.key(), value))
    s.resolve(padded)
    compiled = s.kernels.get(s.topic, s.core.routes[s.topic])
    starts = [{0: 0} for _ in compiled.grants]
    _missing, fallback, _grants, _offsets, _c, _l = compiled.kernel.route(
        s.topic, padded, starts, 739_000
    )
    assert fallback == list(range(len(padded)))
    assert {reason for _, reason in by_core(s, padded)[1]} == {"bad_avro"}


# -- deliveries too large to write ------------------------------------------------------------


def limited(s: Setup, limit: int) -> tuple[Router, Kernels]:
    """The entry's core and kernels with ``router.max_delivery_bytes`` at ``limit``."""
    core = Router(s.lookup, limit)
    core.set_entry(s.topic, EntryRoute(s.entry, s.schema))
    core.set_grants(s.topic, s.grants)
    kernels = Kernels(s.lookup, limit)
    route = core.routes[s.topic]
    ids = kernels.missing(s.topic, route, list(MESSAGES_WITH_IDS))
    kernels.fetch(ids)
    kernels.compile(s.topic, route, ids)
    return core, kernels


MESSAGES_WITH_IDS = [Message("", 0, 0, b"k", b"\x00" + SCHEMA_ID.to_bytes(4, "big"))]


def per_record(s: Setup, batch: list[Message]) -> list[tuple[Message, dict[str, list[Delivery]]]]:
    """Each record's deliveries per grant, by the core without a size limit."""
    out = []
    for m in batch:
        record = SourceRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        by_grant: dict[str, list[Delivery]] = {}
        for d in s.core.route(record).deliveries:
            by_grant.setdefault(d.grant_id, []).append(d)
        out.append((m, by_grant))
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_delivery_over_the_limit_is_a_dead_letter_and_the_rest_is_routed(data: Any) -> None:
    s = setup("gongan.resident_population")
    batch = data.draw(messages(s, valid=True))
    records = per_record(s, batch)
    sizes = sorted(delivery_size(d) for _m, g in records for ds in g.values() for d in ds)
    limit = sizes[len(sizes) // 2]  # some deliveries over it, some not
    core, kernels = limited(s, limit)
    routed = route_live(core, kernels, AllLive(), [(s.topic, 0, 0, len(batch), batch)], "t", "dlq")

    want, refused = [], []
    for m, by_grant in records:
        for grant_id, ds in by_grant.items():
            if max(delivery_size(d) for d in ds) > limit:
                refused.append((f"{s.topic}/0/{m.offset()}", grant_id))
            else:
                want += [(m.offset(), d) for d in ds]
    # A limit below the kernel's margin: the core routed every record.
    assert not routed.streams
    got = [(r.offset, d) for r, _e, d in routed.deliveries]
    assert sorted(got, key=repr) == sorted(want, key=repr)
    letters = [json.loads(out.value) for out in routed.dead]
    assert sorted((x["position"], x["grant_id"]) for x in letters) == sorted(refused)
    assert {x["reason"] for x in letters} <= {"delivery_too_large"}
    events = [(h.details["position"], h.grant_id) for h in routed.happenings]
    assert sorted(events) == sorted(refused)
    assert {h.kind for h in routed.happenings} <= {"delivery.refused"}


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_a_backfill_reports_its_own_grants_refused_deliveries(data: Any) -> None:
    s = setup("gongan.resident_population")
    batch = data.draw(messages(s, valid=True))
    core, kernels = limited(s, 10)  # every delivery is larger
    routed = route_backfill(core, kernels, s.topic, batch, {"g1"}, "t", "dlq")
    assert not routed.deliveries and not routed.streams
    grants = {json.loads(out.value)["grant_id"] for out in routed.dead}
    assert grants <= {"g1"}
    assert len(routed.dead) == len(routed.happenings)


@pytest.mark.parametrize("entry_id", ENTRY_IDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_delivery_outgrows_its_record_by_more_than_the_kernels_margin(
    entry_id: str, data: Any
) -> None:
    """The kernel takes records up to the limit less this margin, and never takes a delivery
    back: every mask kind, hashed keys and the envelope's additions must fit in it."""
    s = setup(entry_id)
    margin = GROWTH_BYTES + GROWTH_PER_FIELD_BYTES * len(s.core.routes[s.topic].fields)
    for m, by_grant in per_record(s, data.draw(messages(s, valid=True))):
        record = len(m.key() or b"") + len(m.value() or b"")
        for ds in by_grant.values():
            assert max(delivery_size(d) for d in ds) - record <= margin


@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_a_huge_key_cannot_make_its_dead_letter_or_audit_event_unwritable(data: Any) -> None:
    # A key of 460 kB (its record fits the source topic): the letter, its Kafka key and the
    # audit event must stay far below the producer's limit, or routing would stop at it.
    s = setup("gongan.resident_population")
    (m, *_rest) = data.draw(messages(s, valid=True))
    value = m.value()
    assume(value is not None and value[5] != 4)  # not a delete, which carries any key
    batch = [Message(s.topic, 0, 0, b"\x01" * 460_000, value)]
    s.resolve(batch)
    routed = route_live(s.core, s.kernels, AllLive(), [(s.topic, 0, 0, 1, batch)], "t", "dlq")
    (letter,) = routed.dead
    assert len(letter.key or b"") <= 71 and len(letter.value) <= 256 * 1024
    assert json.loads(letter.value)["reason"] in ("key_mismatch", "no_key")
    (event,) = routed.happenings
    assert len(json.dumps(event.details)) < 4096


def test_a_delete_with_a_key_too_large_to_deliver_is_refused_with_a_small_letter() -> None:
    s = setup("scjg.legal_entity")  # two of its grants deliver the key as it is
    change = {
        "op": "d",
        "after": None,
        "source": {
            "department": s.entry.provider,
            "system": "s",
            "connector": "c",
            "position": "p",
        },
        "ts_ms": 0,
        "event_id": "e",
    }
    value = s.source.encode(change)
    batch = [Message(s.topic, 0, 0, b"k" * 1_000_000, value)]
    s.resolve(batch)
    routed = route_live(s.core, s.kernels, AllLive(), [(s.topic, 0, 0, 1, batch)], "t", "dlq")
    letters = [json.loads(out.value) for out in routed.dead]
    unhashed = {g.plan.grant.id for g in s.grants if not g.plan.hashed_key}
    assert unhashed and {x["grant_id"] for x in letters} == unhashed
    assert all(len(out.key or b"") <= 71 and len(out.value) <= 256 * 1024 for out in routed.dead)


# -- with a per-key state ----------------------------------------------------------------------


@st.composite
def keyed_batches(draw: Any, s: Setup) -> list[list[Message]]:
    """2-4 batches of changes to a few keys: the same record again, a field changed, a move
    to another region, a delete, and rejected records; event ids repeat now and then."""
    fields = {f["name"]: f for f in s.schema["fields"]}
    rows = [
        {name: draw(_value(s, name, f, True)) for name, f in fields.items()}
        for _ in range(draw(st.integers(1, 5)))
    ]
    changeable = [n for n in fields if n not in s.entry.key]
    out: list[list[Message]] = []
    offset = 0
    for _ in range(draw(st.integers(2, 4))):
        batch = []
        for _ in range(draw(st.integers(1, 10))):
            i = draw(st.integers(0, len(rows) - 1))
            row = dict(rows[i])
            action = draw(st.sampled_from(["same", "change", "move", "delete", "rejected"]))
            if action == "change" and changeable:
                name = draw(st.sampled_from(changeable))
                row[name] = draw(_value(s, name, fields[name], True))
            elif action == "move" and "region_code" in row:
                row["region_code"] = draw(st.sampled_from(REGIONS))
            op = "d" if action == "delete" else draw(st.sampled_from(["c", "u", "r"]))
            change = {
                "op": op,
                "after": None if op == "d" else row,
                "source": {"department": s.entry.provider, "system": "s", "connector": "c"}
                | {"position": "p"},
                "ts_ms": 1_700_000_000_000 + offset,
                "event_id": draw(st.sampled_from(["e1", "e2", f"e-{offset}"])),
            }
            value = s.source.encode(change)
            assert value is not None
            if action == "rejected":
                value += b"\x00"  # trailing bytes: rejected, so it changes nothing
            elif op != "d":
                rows[i] = row
            key = record_key(s.entry, rows[i]).encode()
            batch.append(Message(s.topic, 0, offset, key, value))
            offset += 1
        out.append(batch)
    return out


def by_core_keyed(
    s: Setup, batch: list[Message], state: KeyState, only: Container[str] | None = None
) -> dict[str, Delivered]:
    out: dict[str, Delivered] = {g.plan.grant.id: [] for g in s.grants}
    made = state.begin()
    for m in batch:
        record = SourceRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        for d in s.core.route(record, only, made).deliveries:
            out[d.grant_id].append((d.key, d.value, tuple(d.headers)))
    seq = made.end()
    assert seq is not None
    state.commit(seq)
    return out


def tables(deliveries: dict[str, Delivered]) -> dict[str, set[bytes | None]]:
    """Per grant, the keys a consumer applying the deliveries in order holds at the end."""
    out: dict[str, set[bytes | None]] = {}
    for grant_id, items in deliveries.items():
        held = out.setdefault(grant_id, set())
        for key, value, _headers in items:
            if value is None or value[5] == 4:  # a tombstone, or op "d" (enum index 2)
                held.discard(key)
            else:
                held.add(key)
    return out


@pytest.mark.parametrize("entry_id", ENTRY_IDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_with_a_key_state_the_kernel_delivers_what_the_core_does(entry_id: str, data: Any) -> None:
    s = setup(entry_id)
    batches = data.draw(keyed_batches(s))
    core_state, kernel_state = KeyState(), KeyState()
    got_all: dict[str, Delivered] = {}
    changelog: dict[bytes | None, bytes | None] = {}
    for batch in batches:
        s.resolve(batch)
        want = by_core_keyed(s, batch, core_state)
        routed = route_live(
            s.core,
            s.kernels,
            AllLive(),
            [(s.topic, 0, batch[0].offset(), batch[-1].offset(), batch)],
            "t",
            "dlq",
            {(s.topic, 0): kernel_state},
        )
        for state, seq in routed.state_seqs:
            state.commit(seq)
        for topic, records in routed.changelog:
            assert topic == s.topic and set(records.partitions()) == {0}
            changelog.update(zip(records.keys(), records.values(), strict=True))
        got = by_kernel(routed)
        for grant_id, items in want.items():
            assert got.get(grant_id, []) == items, grant_id
            got_all.setdefault(grant_id, []).extend(items)
    assert sorted(core_state.committed_rows()) == sorted(kernel_state.committed_rows())
    assert kernel_state.sizes()[1] == 0
    # What each consumer holds is exactly the current rows its grant lets through.
    current = current_rows(s, [m for batch in batches for m in batch])
    # The changelog's last record per key is the committed row (a tombstone once deleted).
    rows = dict(kernel_state.committed_rows())
    assert {k: v for k, v in changelog.items() if v is not None} == rows
    held = tables(got_all)
    for active in s.grants:
        expected = {
            active.plan.key(key) for key, row in current.items() if active.plan.accepts(row)
        }
        assert held.get(active.plan.grant.id, set()) == expected, active.plan.grant.id


def _ok(s: Setup, m: Message) -> bool:
    record = SourceRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
    return s.core.route(record, ()).rejection is None


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_kernel_drops_holdings_of_ended_grants_as_the_core_does(data: Any) -> None:
    s = setup("gongan.resident_population")
    rows = [m for m in data.draw(keyed_batches(s))[0] if _ok(s, m) and m.value()]
    assume(rows)
    ended = KeyState.slot("an-ended-grant")
    states = {"kernel": KeyState(), "core": KeyState()}
    for state in states.values():
        made = state.begin()
        for m in rows:
            made.change(m.key() or b"", b"old", [(ended, True, 7)])
        state.commit(made.end() or 0)
    s.resolve(rows)
    routed = route_live(
        s.core,
        s.kernels,
        AllLive(),
        [(s.topic, 0, rows[0].offset(), rows[-1].offset(), rows)],
        "t",
        "dlq",
        {(s.topic, 0): states["kernel"]},
    )
    for state, seq in routed.state_seqs:
        state.commit(seq)
    by_core_keyed(s, rows, states["core"])
    kernel_rows, core_rows = (sorted(st.committed_rows()) for st in states.values())
    assert kernel_rows == core_rows
    for m in rows:
        row = states["kernel"].row(m.key() or b"")
        assert row is None or ended not in dict(row[1])


# -- backfills give current state ----------------------------------------------------------------


def distinct_event_ids(s: Setup, history: list[Message]) -> list[Message]:
    """The history with an event id per distinct change (a connector's repeat of a change keeps
    its id, so identical changes share one), as connectors make them."""
    out = []
    for m in history:
        if not _ok(s, m):
            out.append(m)
            continue
        change = dict(s.core._lookup.decode(m.value() or b"", strict=True))
        seen = repr((m.key(), change["op"], change["after"])).encode()
        change["event_id"] = hashlib.sha256(seen).hexdigest()[:16]
        value = s.source.encode(change)
        out.append(Message(m.topic(), m.partition(), m.offset(), m.key(), value))
    return out


def current_rows(s: Setup, history: list[Message]) -> dict[bytes, dict[str, Any]]:
    current: dict[bytes, dict[str, Any]] = {}
    for m in history:
        change = s.core._lookup.decode(m.value() or b"", strict=True) if _ok(s, m) else None
        if change is None:
            continue
        if change["op"] == "d":
            current.pop(m.key() or b"", None)
        else:
            current[m.key() or b""] = change["after"]
    return current


@pytest.mark.parametrize("entry_id", ENTRY_IDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_backfill_gives_each_live_key_once_as_it_is_now(entry_id: str, data: Any) -> None:
    """Below the offset the live state committed up to, a backfill gives only each key's
    current version (no deleted row, no superseded version, no rejected record); above it the
    changes since. Either way its consumer ends with exactly the current rows, and the kernel
    gives what the core does."""
    s = setup(entry_id)
    history = distinct_event_ids(s, [m for b in data.draw(keyed_batches(s)) for m in b])
    cut = data.draw(st.integers(0, len(history)))
    # The live stream routed the first `cut` records before the grants were active, and
    # committed: each path has its state.
    kernel_state, core_state = KeyState(), KeyState()
    if cut:
        s.resolve(history[:cut])
        routed = route_live(
            s.core,
            s.kernels,
            Handover(),
            [(s.topic, 0, 0, cut - 1, history[:cut])],
            "t",
            "dlq",
            {(s.topic, 0): kernel_state},
        )
        for state, seq in routed.state_seqs:
            state.commit(seq)
        by_core_keyed(s, history[:cut], core_state, only=())
    s.resolve(history)
    grant_keys = {g.key for g in s.grants}
    routed = route_backfill(
        s.core, s.kernels, s.topic, history, grant_keys, "t", "dlq", kernel_state, cut
    )
    got = by_kernel(routed)
    # The core, record by record, with the same rule.
    want: dict[str, Delivered] = {g.plan.grant.id: [] for g in s.grants}
    made = core_state.begin()

    def superseded(r: SourceRecord, event_id: str) -> bool:
        return r.offset < cut and not core_state.is_current(r.key or b"", event_id.encode())

    for m in history:
        record = SourceRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        for d in s.core.route(record, None, made, superseded).deliveries:
            want[d.grant_id].append((d.key, d.value, tuple(d.headers)))
    for grant_id, items in want.items():
        assert got.get(grant_id, []) == items, grant_id
    current = current_rows(s, history)
    held = tables(got)
    for active in s.grants:
        grant_id = active.plan.grant.id
        expected = {
            active.plan.key(key) for key, row in current.items() if active.plan.accepts(row)
        }
        assert held.get(grant_id, set()) == expected, grant_id
        if cut == len(history):
            # Each live key once, whole: nothing deleted, nothing superseded.
            items = got.get(grant_id, [])
            assert len(items) == len(expected)
            assert all(value is not None and value[5] != 4 for _k, value, _h in items)
