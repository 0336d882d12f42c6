"""The router end to end: real broker, real registry, `exchange router` as its own process."""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import subprocess
import time
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from exchange.audit.trail import Query, query, read_trail
from exchange.dlq import REASON_HEADER
from exchange.kafka.control import partitions, read_all, reader, watermarks
from exchange.kafka.registry import Registry
from samples.plain_consumer import read_deliveries
from tests.integration.routing.conftest import CN, EXCHANGE, ROWS, RouterEnv, person

pytestmark = pytest.mark.integration


def test_three_of_eight_fields_masked_where_required(routed: RouterEnv) -> None:
    got = routed.deliveries(routed.consumers["mzj"])
    assert len(got) == 10
    by_region: dict[str, int] = {}
    for message, value in got:
        assert value is not None
        after = value["after"]
        assert set(after) == {"citizen_id", "name", "region_code"}
        source = next(
            r
            for r in ROWS
            if r["citizen_id"][-4:] == after["citizen_id"][-4:]
            and r["citizen_id"][:6] == after["citizen_id"][:6]
        )
        assert after["citizen_id"] == source["citizen_id"][:6] + "*" * 8 + source["citizen_id"][-4:]
        assert after["name"] == source["name"][0] + "*" + source["name"][-1]
        # What a consumer needs is in the value; headers only on tombstones.
        assert value["grant_id"] == "g-mzj" and value["event_id"]
        # Event id and position are the grant's own tokens: nothing joins them across grants.
        for token in (value["event_id"], value["source_position"]):
            assert len(token) == 32 and "/" not in token
        assert not message.headers
        # The key would reveal the masked citizen id: it is a salted hash instead.
        assert message.key is not None and source["citizen_id"].encode() != message.key
        by_region[after["region_code"]] = by_region.get(after["region_code"], 0) + 1
    assert by_region == {"140602": 5, "140603": 5}


def test_county_grant_receives_only_its_county(routed: RouterEnv) -> None:
    c = routed.consumers["county"]
    routed.wait_for("5 county deliveries", lambda: len(routed.deliveries(c)) >= 5)
    got = routed.deliveries(c)
    assert len(got) == 5
    ids = {r["citizen_id"] for r in ROWS if r["region_code"] == "140602"}
    assert {v["after"]["citizen_id"] for _m, v in got if v} == ids
    # Unmasked key field: the key is the citizen id itself.
    assert {m.key.decode() for m, _v in got if m.key} == ids


def test_no_grant_no_delivery(routed: RouterEnv) -> None:
    assert routed.delivery_topics(routed.consumers["nogrant"]) == []


def test_non_provider_and_malformed_records_go_to_the_dlq(routed: RouterEnv) -> None:
    rng = random.Random(7)
    junk: list[tuple[str, bytes | None]] = [
        (f"junk-{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))))
        for i in range(1000)
    ]
    forged = routed.change(person(50, "140602"), department=routed.consumers["mzj"])
    valid = [routed.change(person(100 + i, "140602")) for i in range(5)]
    routed.publish([*junk[:500], forged, *valid, *junk[500:]])
    dlq = routed.settings.topics.dlq

    def rejected() -> list[Any]:
        return [
            m
            for m in read_all(routed.settings.kafka, dlq)
            if b"router" in dict(m.headers).get("exchange.origin", b"")
        ]

    routed.wait_for("1001 rejections", lambda: len(rejected()) >= 1001, 120)
    reasons: dict[str, int] = {}
    for m in rejected():
        reason = dict(m.headers)[REASON_HEADER].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
    assert sum(reasons.values()) == 1001
    assert reasons["not_provider"] == 1
    assert set(reasons) <= {"not_provider", "bad_framing", "bad_avro", "unknown_schema"}
    mzj = routed.consumers["mzj"]
    routed.wait_for("valid records after the junk", lambda: len(routed.deliveries(mzj)) >= 15)
    assert routed.process is not None and routed.process.poll() is None


def test_bytes_that_lax_readers_take_go_to_the_dlq_with_their_reasons(routed: RouterEnv) -> None:
    # Each of these decodes with fastavro (the first four as some other valid record) and
    # was delivered before strict reading: issue 21's malformed corpus.
    mzj = routed.consumers["mzj"]
    before = len(routed.deliveries(mzj))
    cid, good = routed.change(person(300, "140602"))
    registry = Registry(routed.settings.registry)
    latest = registry.latest(routed.project.subject)
    assert latest is not None
    same_shape = json.dumps({**latest.schema, "doc": "the same shape, another subject"})
    foreign_id = registry.register(f"{routed.uid}.forged-value", same_shape)
    cases = {
        "enum index -1": (good[:5] + b"\x01" + good[6:], "bad_avro"),
        "union index -1": (good[:6] + b"\x01" + good[7:], "bad_avro"),
        "padded number": (good[:5] + bytes([good[5] | 0x80, 0]) + good[6:], "bad_avro"),
        "trailing byte": (good + b"\x00", "bad_avro"),
        "another subject's id": (
            b"\x00" + foreign_id.to_bytes(4, "big") + good[5:],
            "schema_mismatch",
        ),
    }
    valid = [routed.change(person(310 + i, "140602")) for i in range(3)]
    routed.publish([*((cid, v) for v, _ in cases.values()), ("", None), *valid])
    wanted = {base64.b64encode(v).decode(): reason for v, reason in cases.values()}

    def ours() -> dict[str, str]:
        found = {}
        for m in read_all(routed.settings.kafka, routed.settings.topics.dlq):
            letter = json.loads(m.value or b"{}")
            data = letter.get("data") or {}
            if letter["origin"] == "router" and data.get("base64") in wanted:
                found[data["base64"]] = letter["reason"]
        return found

    routed.wait_for("the five rejections", lambda: len(ours()) == len(wanted), 60)
    assert ours() == wanted

    def keyless() -> bool:
        for m in read_all(routed.settings.kafka, routed.settings.topics.dlq):
            letter = json.loads(m.value or b"{}")
            if letter.get("reason") == "no_key" and not letter.get("data"):
                return True
        return False

    routed.wait_for("the tombstone without a key set aside, not lost", keyless, 60)
    routed.wait_for(
        "the valid records after them", lambda: len(routed.deliveries(mzj)) >= before + 3, 60
    )
    assert routed.process is not None and routed.process.poll() is None


def test_a_record_too_large_to_deliver_goes_to_the_dlq_and_routing_goes_on(
    routed: RouterEnv,
) -> None:
    # Issue 21: a valid record just under the source topic's size limit made its delivery too
    # large to produce, and the router stopped (and stopped again at every restart) for everyone.
    mzj, county = routed.consumers["mzj"], routed.consumers["county"]
    # mzj's grant masks the name by default, one "*" per character: about 1,037,000 bytes.
    big = {**person(330, "140602"), "name": "张" + "a" * 1_037_000}
    cid, value = routed.change(big)
    assert 1_000_000 < len(value) < 1_048_576  # fits the source topic, not a delivery
    producer = Producer(
        routed.settings.kafka.client_config(**{"message.max.bytes": 2_000_000, "acks": "all"})
    )
    producer.produce(routed.project.source_topic, key=cid.encode(), value=value)
    assert producer.flush(30) == 0
    before = len(routed.deliveries(mzj))
    routed.publish([routed.change(person(331 + i, "140602")) for i in range(3)])

    def letters() -> list[dict[str, Any]]:
        return [
            letter
            for m in read_all(routed.settings.kafka, routed.settings.topics.dlq)
            if (letter := json.loads(m.value or b"{}")).get("reason") == "delivery_too_large"
        ]

    routed.wait_for("the refused delivery's dead letter", lambda: bool(letters()), 60)
    (letter,) = letters()
    assert letter["grant_id"] == "g-mzj" and letter["consumer"] == mzj
    assert letter["data"]["size"] == len(value) and letter["truncated"]
    # The county grant's delivery of the same record (no name in it) is small: delivered.
    routed.wait_for(
        "the county's delivery of the large record",
        lambda: any(v and v["after"]["citizen_id"] == cid for _m, v in routed.deliveries(county)),
        60,
    )
    routed.wait_for("mzj's records after it", lambda: len(routed.deliveries(mzj)) >= before + 3, 60)
    names = [len(v["after"]["name"] or "") for _m, v in routed.deliveries(mzj) if v is not None]
    assert max(names) < 1_000_000
    refused = query(read_trail(routed.settings), Query(grant_id="g-mzj", kind="delivery.refused"))
    assert [e.detail()["reason"] for e in refused] == ["delivery_too_large"]
    assert routed.process is not None and routed.process.poll() is None


def test_revocation_stops_delivery_within_5_seconds(routed: RouterEnv) -> None:
    late = routed.consumers["late"]
    routed.grant(late, "g-late", fields=["region_code"])
    store = routed.store(routed.provider)
    store.revoke("g-late", "测试撤销")
    store.close()
    time.sleep(5)
    before = len(routed.deliveries(late))
    routed.publish([routed.change(person(200 + i, "140602")) for i in range(5)])
    mzj = routed.consumers["mzj"]
    routed.wait_for(
        "mzj still receives",
        lambda: any(
            v and v["after"]["citizen_id"].endswith(person(204, "140602")["citizen_id"][-4:])
            for _m, v in routed.deliveries(mzj)
        ),
    )
    assert len(routed.deliveries(late)) <= before
    # Within 30 s nothing of the revoked grant is left to read (its generation's topic goes).
    routed.wait_for("the revoked grant's topic gone", lambda: not routed.delivery_topics(late), 30)


def test_expired_grant_delivers_nothing_after_expiry(routed: RouterEnv) -> None:
    c = routed.consumers["ops"]
    until = dt.datetime.now(CN) + dt.timedelta(seconds=6)
    routed.grant(c, "g-expiring", fields=["region_code"], valid_until=until)
    routed.publish([routed.change(person(300, "140611"))])
    routed.wait_for("delivery before expiry", lambda: "140611" in _regions(routed.deliveries(c)))
    time.sleep(max(0.0, (until - dt.datetime.now(CN)).total_seconds()) + 0.5)
    before = len(routed.deliveries(c))
    routed.publish([routed.change(person(301 + i, "140612")) for i in range(5)])
    routed.wait_for(
        "the expiry in the audit trail",
        lambda: bool(
            query(
                read_trail(routed.settings), Query(grant_id="g-expiring", kind="delivery.stopped")
            )
        ),
        30,
    )
    stopped = query(
        read_trail(routed.settings), Query(grant_id="g-expiring", kind="delivery.stopped")
    )
    assert stopped[0].detail()["why"] == "expired"
    assert stopped[0].ts_ms >= int(until.timestamp() * 1000)
    assert len(routed.deliveries(c)) <= before
    assert "140612" not in _regions(routed.deliveries(c))
    routed.wait_for("the expired grant's topic gone", lambda: not routed.delivery_topics(c), 30)


def _regions(deliveries: list[tuple[Any, dict[str, Any] | None]]) -> set[str]:
    return {v["after"]["region_code"] for _m, v in deliveries if v and v["after"]}


def test_new_grant_is_backfilled_with_the_full_current_state(routed: RouterEnv) -> None:
    rows = [person(400 + i, "140609") for i in range(8)]
    renamed = {i: {**rows[i], "name": "李四"} for i in (0, 1, 3)}
    # History before the grant: creates, two updates, a delete.
    routed.publish(
        [routed.change(r, "c") for r in rows[:6]]
        + [routed.change(renamed[0]), routed.change(renamed[1]), routed.change(rows[2], "d")]
    )
    mzj = routed.consumers["mzj"]
    routed.wait_for(
        "the history routed live",
        lambda: sum(1 for _m, v in routed.deliveries(mzj) if v and v["op"] == "d") >= 1,
    )
    fresh = routed.consumers["fresh"]
    routed.grant(
        fresh,
        "g-fresh",
        fields=["citizen_id", "name", "region_code"],
        row_filter={"region_code": {"prefix": "140609"}},
        masks={"citizen_id": "none", "name": "none"},
    )
    # The live stream goes on while the grant is backfilled.
    routed.publish([routed.change(rows[6]), routed.change(rows[7]), routed.change(renamed[3])])

    def table() -> dict[bytes, dict[str, Any]]:
        current: dict[bytes, dict[str, Any]] = {}
        for message, value in routed.deliveries(fresh):
            assert message.key is not None
            if value is None or value["op"] == "d":
                current.pop(message.key, None)
            else:
                current[message.key] = value["after"]
        return current

    expected = {
        r["citizen_id"].encode(): {
            "citizen_id": r["citizen_id"],
            "name": renamed[i]["name"] if i in renamed else r["name"],
            "region_code": "140609",
        }
        for i, r in enumerate(rows)
        if i != 2
    }
    routed.wait_for("the backfilled table", lambda: table() == expected)
    # Current state, not history: the deleted row never reached the grant, not even as a
    # delete, and the rows renamed before it arrived once, as they are now.
    got = routed.deliveries(fresh)
    assert rows[2]["citizen_id"].encode() not in {m.key for m, _v in got}
    for i in (0, 1):
        mine = [v for m, v in got if m.key == rows[i]["citizen_id"].encode()]
        assert [(v["op"], v["after"]["name"]) for v in mine if v] == [("c", "李四")]
        assert len(mine) == 1
    # Nothing arrived twice: not for the new grant, nor for anyone else.
    for consumer in (fresh, mzj):
        events = [v["event_id"] for _m, v in routed.deliveries(consumer) if v]
        assert len(events) == len(set(events)), consumer
    topic = routed.project.source_topic
    numbers = partitions(reader(routed.settings.kafka), topic, 10)

    def handed_over() -> list[tuple[str, int]]:
        events = query(
            read_trail(routed.settings), Query(grant_id="g-fresh", kind="delivery.backfilled")
        )
        return sorted((e.detail()["source_topic"], e.detail()["partition"]) for e in events)

    # The hand-over is audited once the last backfilled chunk is acknowledged.
    routed.wait_for("hand-overs audited", lambda: len(handed_over()) >= len(numbers))
    assert handed_over() == [(topic, p) for p in numbers]
    receipts = query(
        read_trail(routed.settings), Query(grant_id="g-fresh", kind="delivery.receipt")
    )
    assert any(e.detail()["backfill"] for e in receipts)


def test_a_new_grant_is_backfilled_from_wherever_the_source_log_starts(
    routed: RouterEnv,
) -> None:
    """Issue 20: with the log start above 0 (retention, deleted records) the backfill's reader
    had no offset reset policy, jumped to the end, and the records still in the partition never
    reached the new grant."""
    gone = [person(700 + i, "140612") for i in range(6)]
    kept = [person(720 + i, "140612") for i in range(6)]
    topic = routed.project.source_topic
    routed.publish([routed.change(r, "c") for r in gone])
    probe = reader(routed.settings.kafka)
    numbers = partitions(probe, topic, 10)
    marks = {p: watermarks(probe, topic, p, 10)[1] for p in numbers}
    # Above the new log start: creates, then two renames and a delete.
    deletes = _deletes(routed)
    renamed = [{**r, "name": "周七"} for r in kept[:2]]
    routed.publish(
        [routed.change(r, "c") for r in kept]
        + [routed.change(r) for r in renamed]
        + [routed.change(kept[2], "d")]
    )
    admin = AdminClient(routed.settings.kafka.client_config())
    futures = admin.delete_records([TopicPartition(topic, p, o) for p, o in marks.items()])
    for future in futures.values():
        future.result(timeout=30)
    assert all(watermarks(probe, topic, p, 10)[0] == marks[p] for p in numbers)
    assert any(marks[p] > 0 for p in numbers)
    probe.close()
    routed.wait_for("the history routed live", lambda: _deletes(routed) > deletes)
    trimmed = routed.consumers["trimmed"]
    routed.grant(
        trimmed,
        "g-trimmed",
        row_filter={"region_code": {"prefix": "140612"}},
        masks={"citizen_id": "none", "name": "none"},
    )

    def received() -> list[tuple[str, str, str]]:
        return [
            (v["op"], v["after"]["citizen_id"], v["after"]["name"])
            for _m, v in routed.deliveries(trimmed)
            if v
        ]

    # Exactly the current rows the log still holds, each once: no deleted row, no older name.
    current = [*renamed, *kept[3:]]
    want = sorted(("c", r["citizen_id"], r["name"]) for r in current)
    routed.wait_for(
        "the current rows still in the source log",
        lambda: len(received()) >= len(want),
        60,
    )
    time.sleep(2)  # anything more would have come by now
    assert sorted(received()) == want


def _deletes(routed: RouterEnv) -> int:
    """Deletes mzj (every row, no filter) has received: the live stream's committed progress."""
    return sum(1 for _m, v in routed.deliveries(routed.consumers["mzj"]) if v and v["op"] == "d")


def test_exchange_consume_and_a_plain_avro_consumer_read_the_same_deliveries(
    routed: RouterEnv,
) -> None:
    mzj = routed.consumers["mzj"]
    result = subprocess.run(
        [
            str(EXCHANGE),
            "--config",
            str(routed.project.exchange_yaml),
            "consume",
            routed.project.entry_id,
            "--as",
            mzj,
            "--idle",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    changes = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(changes) >= 10
    assert {c["grant_id"] for c in changes} == {"g-mzj"}
    assert all(
        set(c["value"]) == {"citizen_id", "name", "region_code"}
        if c["op"] != "d"
        else not c["value"]
        for c in changes
    )
    assert "change(s) handled" in result.stderr
    plain = read_deliveries(
        routed.delivery_topic(mzj),
        group_id=f"{mzj}.plain",
        bootstrap=routed.settings.kafka.bootstrap_servers,
        registry=routed.settings.registry.url,
        idle_s=3,
    )
    # The delivery topic has several partitions, and Kafka orders records only within one: both
    # readers see the same changes, and each key's changes in the same order.
    assert _by_key(plain) == _by_key(changes)
    assert {c["grant_id"] for c in plain} == {"g-mzj"}
    # A wrong department's topic does not exist: a clear error, not a hang.
    missing = subprocess.run(
        [
            *(str(EXCHANGE), "--config", str(routed.project.exchange_yaml)),
            *("consume", "nope.x", "--as", mzj, "--idle", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "no active grant" in missing.stderr


def _by_key(changes: list[dict[str, Any]]) -> dict[str, list[str]]:
    order: dict[str, list[str]] = {}
    for change in changes:
        order.setdefault(change["key"], []).append(change["event_id"])
    return order


def test_consume_counts_idle_time_only_once_its_group_assigned_it_partitions(
    routed: RouterEnv,
) -> None:
    """Started right after a killed consumer of its group, ``exchange consume --idle`` waits
    for the dead member's partitions instead of reporting nothing and exiting."""
    mzj = routed.consumers["mzj"]
    command = [
        *(str(EXCHANGE), "--config", str(routed.project.exchange_yaml)),
        *("consume", routed.project.entry_id, "--as", mzj, "--group", f"{mzj}.idle", "--json"),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert first.stdout is not None
    first.stdout.readline()  # it has its partitions and reads
    time.sleep(3)  # ... and has committed what it handled
    first.kill()
    first.wait()
    fresh = [person(500 + i, "140602") for i in range(5)]
    routed.publish([routed.change(r, event=f"idle-{i}") for i, r in enumerate(fresh)])
    result = subprocess.run(
        [*command, "--idle", "3"], capture_output=True, text=True, timeout=180, check=True
    )
    changes = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    grant = changes[0]["grant_id"]
    assert {c["event_id"] for c in changes} >= {
        routed.token(grant, "event", f"idle-{i}") for i in range(len(fresh))
    }
