import copy
import datetime as dt
from typing import Any

import pytest

from exchange.catalog.avro import envelope_schema, load_schema
from exchange.catalog.model import CatalogEntry
from exchange.grants.model import Grant
from exchange.kafka.envelope import EnvelopeEncoder
from exchange.kafka.errors import RegistryError
from exchange.kafka.wire import AvroCodec, SchemaLookup, schema_id_of
from exchange.routing.core import (
    EVENT_HEADER,
    GRANT_HEADER,
    SOURCE_HEADER,
    ActiveGrant,
    Delivery,
    EntryRoute,
    Router,
    SourceRecord,
)
from exchange.routing.receipts import receipt_digest
from exchange.routing.salts import GrantSalts
from exchange.routing.transform import DeliveryPlan, delivery_schema, delivery_token, ids_key
from tests.conftest import ROOT
from tests.unit.grants.fixtures import SCHEMA, grant

#: Salts as the router derives them, from a test secret.
SALTS = GrantSalts(b"test salt secret, 32 bytes long!")

TOPIC = "src.gongan.resident_population"
ENVELOPE = envelope_schema(
    "gongan.resident_population", SCHEMA, load_schema(ROOT / "schemas/avro/exchange/envelope.avsc")
)
SOURCE = AvroCodec(7, copy.deepcopy(ENVELOPE))
ENTRY = CatalogEntry.model_validate(
    {
        "id": "gongan.resident_population",
        "title": "人口基础信息",
        "provider": "gongan",
        "schema": "gongan/resident_population.avsc",
        "key": "citizen_id",
        "sharing": "conditional",
        "update_cycle": "daily",
        "fields": {
            "citizen_id": {"sensitivity": "sensitive", "rules": ["required", "citizen_id"]},
            "name": {"sensitivity": "sensitive"},
            "region_code": {"rules": [{"pattern": "^\\d{6}$"}]},
        },
    }
)
CID = "11010519491231002X"
ROW: dict[str, Any] = {
    "citizen_id": CID,
    "name": "张三丰",
    "gender": "1",
    "birth_date": dt.date(1949, 12, 31),
    "ethnicity": None,
    "address": None,
    "region_code": "140602",
    "phone": None,
}


def change(op: str = "u", after: dict[str, Any] | None = ROW, department: str = "gongan") -> bytes:
    return SOURCE.encode(
        {
            "op": op,
            "after": after,
            "source": {"department": department, "system": "s", "connector": "c", "position": "1"},
            "ts_ms": 1_700_000_000_000,
            "event_id": "ev1",
        }
    )


def fetch(schema_id: int) -> dict[str, Any]:
    """Like the registry: only id 7 exists."""
    if schema_id != 7:
        raise RegistryError("no such schema", http_status=404, error_code=40403)
    return copy.deepcopy(ENVELOPE)


def router(*grants: Grant, subjects: dict[int, set[str]] | None = None) -> Router:
    """A router of one entry; ``subjects``: the registry's subjects per schema id."""
    known = subjects
    lookup = SchemaLookup(fetch, None if known is None else lambda i: known.get(i, set()))
    r = Router(lookup)
    r.set_entry(TOPIC, EntryRoute(ENTRY, SCHEMA))
    active = []
    for i, g in enumerate(grants):
        terms = g.terms()
        envelope = EnvelopeEncoder(100 + i, delivery_schema(ENTRY, SCHEMA, terms))
        topic = f"dlv.{g.request.consumer}.{ENTRY.id}"
        active.append(
            ActiveGrant(DeliveryPlan.build(terms, ENTRY, SALTS.salt(terms.id)), topic, envelope)
        )
    r.set_grants(TOPIC, active)
    return r


def approved(grant_id: str, **changes: Any) -> Grant:
    return grant(**changes).model_copy(update={"id": grant_id, "state": "approved"})


def record(value: bytes | None, key: bytes | None = CID.encode(), offset: int = 5) -> SourceRecord:
    return SourceRecord(TOPIC, 1, offset, key, value)


def test_each_grant_gets_its_projection() -> None:
    three = approved("g3", fields=["citizen_id", "name", "region_code"])
    county = approved(
        "county",
        consumer="rsj",
        fields=["region_code"],
        row_filter={"region_code": {"prefix": "140603"}},
    )
    out = router(three, county).route(record(change()))
    assert out.rejection is None and out.entry == ENTRY.id
    assert out.filtered == [("county", "rsj")]
    (d,) = out.deliveries
    assert d.topic == "dlv.mzj.gongan.resident_population" and d.consumer == "mzj"
    value = AvroCodec(100, delivery_schema(ENTRY, SCHEMA, three.terms())).decode(d.value or b"")
    assert value["after"] == {
        "citizen_id": "1" + "*" * 16 + "X",
        "name": "张*丰",
        "region_code": "140602",
    }
    assert value["grant_id"] == "g3" and value["provider"] == "gongan"
    ids = ids_key(SALTS.salt("g3"))
    assert value["event_id"] == delivery_token(ids, "event", "ev1")
    assert value["source_position"] == delivery_token(ids, "position", f"{TOPIC}/1/5")
    assert d.headers == ()  # headers only on tombstones
    assert d.key is not None and CID.encode() not in d.key


def test_deletes_become_a_delete_and_a_tombstone() -> None:
    out = router(approved("g")).route(record(change("d", None)))
    assert [d.value is None for d in out.deliveries] == [False, True]
    assert out.deliveries[0].key == out.deliveries[1].key
    # The tombstone has no value to say what it is: its headers do.
    ids = ids_key(SALTS.salt("g"))
    assert dict(out.deliveries[1].headers) == {
        GRANT_HEADER: b"g",
        EVENT_HEADER: delivery_token(ids, "event", "ev1").encode(),
        SOURCE_HEADER: delivery_token(ids, "position", f"{TOPIC}/1/5").encode(),
    }


def test_event_ids_and_positions_are_per_grant_and_the_same_for_a_repeat() -> None:
    two = router(approved("a"), approved("b", consumer="rsj"))
    first, again = two.route(record(change())), two.route(record(change()))

    def decode(d: Delivery) -> dict[str, Any]:
        schema = delivery_schema(ENTRY, SCHEMA, approved(d.grant_id).terms())
        return AvroCodec(schema_id_of(d.value or b""), schema).decode(d.value or b"")

    def ids(deliveries: list[Delivery]) -> dict[str, tuple[str, str]]:
        values = {d.grant_id: decode(d) for d in deliveries}
        return {g: (v["event_id"], v["source_position"]) for g, v in values.items()}

    assert ids(first.deliveries) == ids(again.deliveries)  # a repeat is recognised
    (a_event, a_position), (b_event, b_position) = ids(first.deliveries).values()
    assert len({a_event, b_event, a_position, b_position, "ev1"}) == 5  # nothing to join on
    assert all(len(t) == 32 for t in (a_event, a_position))


def test_source_tombstones_are_skipped() -> None:
    out = router(approved("g")).route(record(None))
    assert out.deliveries == [] and out.rejection is None


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"not avro at all", CID.encode(), "bad_framing"),
        (b"\x00\x00\x00\x00\x07\xff\xff", CID.encode(), "bad_avro"),
        # Bytes fastavro reads anyway (as op "r", the last symbol; as the record branch; as
        # op "u"), which the strict reading refuses: issue 21's malformed corpus.
        (change()[:5] + b"\x01" + change()[6:], CID.encode(), "bad_avro"),
        (change()[:6] + b"\x01" + change()[7:], CID.encode(), "bad_avro"),
        (change()[:5] + b"\x82\x00" + change()[6:], CID.encode(), "bad_avro"),
        (change() + b"\x00", CID.encode(), "bad_avro"),
        (change(department="mzj"), CID.encode(), "not_provider"),
        (
            change(after={**ROW, "citizen_id": "110105194912310021"}),
            b"110105194912310021",
            "rule_violation",
        ),
        (change(), b"someone-else", "key_mismatch"),
        (change("d", None), None, "no_key"),
        (None, None, "no_key"),  # a tombstone that deletes nothing
        (None, b"", "no_key"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(
    value: bytes | None, key: bytes | None, reason: str
) -> None:
    out = router(approved("g")).route(record(value, key))
    assert out.rejection is not None and out.rejection.reason == reason
    assert out.deliveries == []
    assert out.rejection.errors and all("message" in e for e in out.rejection.errors)


def test_unknown_schema_id_and_topic() -> None:
    out = router().route(record(b"\x00\x00\x00\x00\x09abc"))
    assert out.rejection is not None and out.rejection.reason == "unknown_schema"
    out = router().route(SourceRecord("src.nobody", 0, 0, None, b"x"))
    assert out.rejection is not None and out.rejection.reason == "unknown_entry"


def test_no_grant_no_delivery_and_digest_is_order_sensitive() -> None:
    assert router().route(record(change())).deliveries == []
    r = router(approved("a"), approved("b", consumer="rsj"))
    ds = r.route(record(change())).deliveries
    assert len(ds) == 2
    assert receipt_digest((d.key, d.value) for d in ds) != receipt_digest(
        (d.key, d.value) for d in reversed(ds)
    )


def test_a_record_framed_with_another_subjects_schema_is_refused() -> None:
    # Schema id 7 has the entry's shape, but it was registered for another topic.
    out = router(approved("g"), subjects={7: {"src.other.entry-value"}}).route(record(change()))
    assert out.rejection is not None and out.rejection.reason == "schema_mismatch"
    assert "schema id 7 is not a version of src.gongan.resident_population-value" in str(
        out.rejection.errors
    )
    ours = {7: {"src.other.entry-value", f"{TOPIC}-value"}}
    assert router(approved("g"), subjects=ours).route(record(change())).rejection is None
