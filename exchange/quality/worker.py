"""The quality worker (``exchange quality run``): measures each entry from its stream, finds the
fixes consumers' objections wait for, and escalates steps past their deadline.

It reads what the router reads (every committed record of the source topics, from their start,
with its own reader: nothing the router does waits for it) and the dead letters, and follows
the objections and grants. Each ``quality.interval_s`` it

- locates new objections: the version objected to (by its delivered event id, or the newest
  version of the key before the objection was filed) and where it is in the source;
- escalates objections whose step is past its deadline (notices to the operators and the late
  side; an audit event);
- publishes each entry's measures and score (``topics.quality_measures``, Prometheus metrics)
  and, every ``quality.score_every_s``, adds the scores to their history
  (``topics.quality_scores``).

A record of a key under an objection, later than the located version and with other values in
the objected fields (or deleted), is the fix: the objection becomes ``fixed`` (an audit event on
the worker's chain ``quality.<name>``, the consumer's notice). Measures are background work:
the worker lowers its own CPU priority (``quality.nice``) and waits while the router works
through a backlog (:class:`RouterYield`), so the router goes first on a shared host.

Grants that hash their delivered key (or event ids) are matched with the router's salt secret
(``router.salt_secret_file``): run the worker where the router runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.published import PublishedCatalog, read_published
from exchange.config import ExchangeSettings
from exchange.dlq import ORIGIN_HEADER, REASON_HEADER
from exchange.errors import ExchangeError
from exchange.grants.model import Grant
from exchange.kafka.admin import Admin
from exchange.kafka.control import Message, publish, read_range, reader, watermarks
from exchange.kafka.errors import RegistryError
from exchange.kafka.follow import Follower, RecordCounter
from exchange.kafka.registry import Registry
from exchange.kafka.tables import Tables
from exchange.kafka.wire import SchemaLookup, WireFormatError
from exchange.portal.notices import escalation_notices, objection_notices
from exchange.quality.calendar import step_deadlines
from exchange.quality.checks import CheckBook
from exchange.quality.measures import (
    EntryTally,
    Measures,
    department_scores,
    measure,
    objection_figures,
)
from exchange.quality.metrics import QualityMetrics
from exchange.quality.objections import (
    WAITING_FOR_PROVIDER,
    Located,
    Objection,
    advance,
    audit_details,
    event_kind,
    fingerprint,
    overdue,
)
from exchange.routing.salts import GrantSalts, SaltSecretError, read_salts
from exchange.routing.transform import DeliveryPlan

__all__ = ["QualityWorker", "RouterYield"]

log = logging.getLogger(__name__)
EXCHANGE = "exchange"
#: Distinct dead-letter reasons kept per entry (the rest are counted as ``other``).
MAX_REASONS = 20


@dataclass(frozen=True)
class _Version:
    partition: int
    offset: int
    ts_ms: int
    key: bytes
    event_id: str | None
    after: dict[str, Any] | None


class QualityWorker:
    """One worker. No network until :meth:`start`."""

    def __init__(
        self,
        settings: ExchangeSettings,
        name: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.name = name
        self.chain = f"quality.{name}"
        self.clock = clock
        q = settings.quality
        self.due = step_deadlines(q.deadlines, q.holidays, q.workdays, q.utc_offset_hours)
        t = settings.topics
        self.tables = Tables(
            settings.kafka, {t.objections: Objection.decode, t.grants: Grant.decode}, "quality"
        )
        self.metrics = QualityMetrics()
        self.tallies: dict[str, EntryTally] = {}
        self.checks = CheckBook(())
        self.catalog: PublishedCatalog | None = None
        self._by_topic: dict[str, str] = {}
        #: (source topic, source key) -> objections waiting for a fix of that record.
        self._watch: dict[tuple[str, bytes], set[str]] = {}
        self._sources = RecordCounter(settings.kafka, on_record=self._on_record)
        self._dlq: Follower | None = None
        self._lookup: SchemaLookup | None = None
        self._writer: AuditWriter | None = None
        self._salts: GrantSalts | None = None
        self._salts_problem: str | None = None
        self._last_scores = 0.0
        self._yield = RouterYield(None, "", 0, 0.0)
        #: Fixes found whose write failed: tried again each round.
        self._unwritten: list[tuple[str, int, int, dict[str, Any] | None]] = []
        #: The source topics were read to their ends once: measures are whole from then on.
        self.caught_up = False
        self.undecodable: Counter[str] = Counter()
        self.latest: dict[str, Measures] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        if s.quality.nice:
            os.nice(s.quality.nice)
        self.tables.start(s.kafka.request_timeout_s * 4)
        self._dlq = Follower(s.kafka, s.topics.dlq, committed=True)
        self._yield = RouterYield(
            Admin(s.kafka),
            s.router.group_id,
            s.quality.yield_to_router_records,
            s.quality.max_yield_s,
        )
        self._lookup = SchemaLookup(Registry(s.registry).schema_by_id)
        self._writer = AuditWriter.connect(s, self.chain)
        self._refresh_catalog()

    def stop(self) -> None:
        self.tables.stop()
        self._sources.close()
        if self._dlq is not None:
            self._dlq.close()
        if self._writer is not None:
            self._writer.close()

    def run(self, stop: threading.Event) -> None:
        """Read and measure until ``stop`` is set."""
        every = self.settings.quality.interval_s
        next_round = 0.0
        while not stop.is_set():
            if self._yield.busy():
                self._sources.pause(True)
                stop.wait(0.5)
                continue
            # Short reads: the router is looked at again before each.
            try:
                self.read(budget_s=0.5)
            except ExchangeError as exc:  # the broker away a moment: read again shortly
                log.warning("reading the source topics: %s", exc)
                stop.wait(1.0)
            if time.monotonic() >= next_round:
                try:
                    self.round()
                except ExchangeError as exc:  # the next round tries again
                    log.warning("quality round failed: %s", exc)
                except Exception:  # a bug must not stop the measures for good: logged whole
                    log.exception("quality round failed")
                next_round = time.monotonic() + every
            if self._sources.caught_up:
                stop.wait(0.5)

    # -- reading -----------------------------------------------------------------------------

    def read(self, budget_s: float) -> None:
        """What is new on the source topics and the DLQ."""
        if self.catalog is None:
            return
        counts = {e.source_topic: e.entry.partitions for e in self.catalog.entries.values()}
        self._yield.watch([(t, p) for t, n in counts.items() for p in range(n)])
        self._sources.update(counts, budget_s)
        if self._sources.caught_up:
            self.caught_up = True
        assert self._dlq is not None
        for msg in self._dlq.read_new(budget_s):
            self._on_dead_letter(msg)

    def _on_record(self, msg: Message) -> None:
        entry = self._by_topic.get(msg.topic)
        if entry is None or msg.key is None:
            return
        if msg.value is None:  # a tombstone after a delete: the delete was counted
            self.checks.update(entry, msg.key, None)
            return
        try:
            after = _after(self._decode(msg.value))
        except (WireFormatError, RegistryError, ValueError) as exc:
            # A department writes its own source topics: bytes of any making, framed with any
            # registered schema, are counted and passed over (the router dead-letters them).
            self.undecodable[entry] += 1
            log.debug(
                "undecodable record at %s/%s/%s: %s", msg.topic, msg.partition, msg.offset, exc
            )
            return
        tally = self.tallies.get(entry)
        if tally is not None:
            # Source records carry their writer's time: one stamped in the year 9999 must not
            # make an entry "never late" (nor break the date arithmetic).
            tally.add(after, min(max(msg.ts_ms or 0, 0), int(time.time() * 1000)))
        self.checks.update(entry, msg.key, after)
        for objection_id in tuple(self._watch.get((msg.topic, msg.key), ())):
            fix = (objection_id, msg.partition, msg.offset, after)
            try:
                self._maybe_fixed(*fix)
            except ExchangeError as exc:  # written again next round
                log.warning("cannot mark %s fixed yet: %s", objection_id, exc)
                self._unwritten.append(fix)

    def _decode(self, value: bytes) -> dict[str, Any]:
        assert self._lookup is not None
        return self._lookup.decode(value)

    def _on_dead_letter(self, msg: Message) -> None:
        try:
            body = json.loads(msg.value or b"")
            entry = str(body.get("entry") or "")
        except (ValueError, AttributeError):
            return
        tally = self.tallies.get(entry)
        if tally is not None:
            headers = dict(msg.headers)
            reason = headers.get(REASON_HEADER, b"unknown").decode("utf-8", "replace")[:64]
            if reason not in tally.rejected and len(tally.rejected) >= MAX_REASONS:
                reason = "other"  # reasons become metric labels: a bounded set
            tally.reject(reason, headers.get(ORIGIN_HEADER, b"").decode("utf-8", "replace"))

    # -- each round --------------------------------------------------------------------------

    def round(self) -> None:
        """Locate new objections, escalate late ones, publish the measures."""
        self._refresh_catalog()
        self.tables.sync()
        unwritten, self._unwritten = self._unwritten, []
        for fix in unwritten:
            self._each(fix[0], functools.partial(self._maybe_fixed, *fix))
        waiting = [o for o in self._objections().values() if o.state in WAITING_FOR_PROVIDER]
        for o in waiting:
            if o.located is not None:
                self._watch_located(o)
        unlocated = [o for o in waiting if o.located is None]
        # Each is a pass over a source topic: not while the router works through a backlog.
        if unlocated and not self._yield.busy():
            self._locate_all(unlocated)
        now = self.clock()
        for o in list(self._objections().values()):
            if overdue(o, now):
                self._each(o.id, functools.partial(self._escalate, o, now))
        if self.caught_up:
            self._publish_measures(now)

    @staticmethod
    def _each(objection_id: str, step: Callable[[], None]) -> None:
        """One objection's step; its failure is logged and does not stop the others'."""
        try:
            step()
        except ExchangeError as exc:
            log.warning("objection %s: %s (tried again next round)", objection_id, exc)
        except Exception:  # one objection's bug must not stop the others' (nor the measures)
            log.exception("objection %s (tried again next round)", objection_id)

    def _refresh_catalog(self) -> None:
        catalog = read_published(self.settings)
        self.catalog = catalog
        self._by_topic = {e.source_topic: e.entry.id for e in catalog.entries.values()}
        for e in catalog.entries.values():
            names = tuple(_field_names(e.record_schema_json))
            tally = self.tallies.setdefault(e.entry.id, EntryTally(fields=names))
            # A new schema version: its fields from now on, what was counted is kept.
            tally.fields = names
        declared = [(e.entry.id, c) for e in catalog.entries.values() for c in e.entry.checks]
        if declared != self.checks.checks:
            # A new check reads values already passed: read the sources again from their start.
            self.checks = CheckBook(declared)
            if self.caught_up:
                self._restart_reading()

    def _restart_reading(self) -> None:
        self._sources.close()
        self._sources = RecordCounter(self.settings.kafka, on_record=self._on_record)
        self.tallies = {k: EntryTally(fields=v.fields) for k, v in self.tallies.items()}
        self.caught_up = False

    def _objections(self) -> dict[str, Objection]:
        return self.tables.items(self.settings.topics.objections)

    # -- objections ----------------------------------------------------------------------------

    def _plan(self, grant: Grant, need_salt: bool) -> DeliveryPlan | None:
        """The grant's delivery plan (its key hashing and ids), ``None`` without the salts
        when they are needed."""
        assert self.catalog is not None
        published = self.catalog.entries.get(grant.request.entry)
        if published is None:
            return None
        salt = b""
        if need_salt:
            salts = self._salt_source()
            if salts is None:
                return None
            salt = salts.salt(grant.id)
        return DeliveryPlan.build(grant.terms(), published.entry, salt)

    def _salt_source(self) -> GrantSalts | None:
        if self._salts is None and self._salts_problem is None:
            try:
                self._salts = read_salts(self.settings)
            except SaltSecretError as exc:
                self._salts_problem = str(exc)
                log.warning(
                    "objections on grants that hash keys or name event ids cannot be matched "
                    "exactly: %s (run the quality worker where the router runs)",
                    exc,
                )
        return self._salts

    def _locate_all(self, objections: list[Objection]) -> None:
        """Find the versions objected to, one pass per entry's source topic for all of its
        new objections (at most ``quality.locate_entries_per_round`` topics a round), and any
        later version that fixed one already."""
        by_entry: dict[str, list[tuple[Objection, DeliveryPlan, DeliveryPlan]]] = {}
        for o in objections:
            plans = self._plans_of(o)
            if plans is not None:
                by_entry.setdefault(o.entry, []).append((o, *plans))
        assert self.catalog is not None
        for entry in sorted(by_entry)[: self.settings.quality.locate_entries_per_round]:
            published = self.catalog.entries[entry]
            wanted = by_entry[entry]
            versions = self._versions(published.source_topic, published.entry.partitions, wanted)
            for o, plan, unsalted in wanted:
                self._each(
                    o.id,
                    functools.partial(self._settle, o, plan, unsalted, versions.get(o.id, [])),
                )

    def _plans_of(self, o: Objection) -> tuple[DeliveryPlan, DeliveryPlan] | None:
        """The objection's grant's plan (salted when its key or event ids need it) and its
        unsalted plan (for what the grant lets through); ``None`` when they cannot be had."""
        grant: Grant | None = self.tables.get(self.settings.topics.grants, o.grant_id)
        assert self.catalog is not None
        if grant is None or o.entry not in self.catalog.entries:
            return None
        unsalted = self._plan(grant, need_salt=False)
        if unsalted is None:
            return None
        need_salt = unsalted.hashed_key or (o.event is not None and o.round == 1)
        plan = self._plan(grant, need_salt) if need_salt else unsalted
        if plan is None:
            if unsalted.hashed_key:
                return None  # without the salts the key cannot be matched: tried again later
            plan = unsalted
        return plan, unsalted

    def _settle(
        self, o: Objection, plan: DeliveryPlan, unsalted: DeliveryPlan, versions: list[_Version]
    ) -> None:
        base = _objected(versions, o, plan if plan is not unsalted else None)
        if base is not None and base.after is not None and not unsalted.accepts(base.after):
            base = None  # a version its grant never delivered: as if not found
        if base is None:
            located = Located(partition=-1, offset=-1, fingerprint="missing", source_key="")
        else:
            located = Located(
                partition=base.partition,
                offset=base.offset,
                fingerprint=fingerprint(_view(unsalted, base.after), o.fields),
                source_key=base.key.hex(),
            )
        current = self._current(o.id)
        if current is None or current.located is not None or current.state != o.state:
            return
        updated = current.model_copy(update={"located": located})
        self._write("quality.objection.located", updated, [], {"found": base is not None})
        self._watch_located(updated)
        if base is not None:
            for v in versions:
                if v.offset > base.offset and v.partition == base.partition:
                    self._maybe_fixed(updated.id, v.partition, v.offset, v.after)

    def _versions(
        self,
        topic: str,
        partitions: int,
        wanted: list[tuple[Objection, DeliveryPlan, DeliveryPlan]],
    ) -> dict[str, list[_Version]]:
        """Every committed version of the objected keys on the source topic, per objection,
        in one pass (keys compared as each grant delivers them)."""
        by_grant: dict[str, tuple[DeliveryPlan, dict[bytes, list[str]]]] = {}
        for o, plan, _u in wanted:
            keys = by_grant.setdefault(o.grant_id, (plan, {}))[1]
            keys.setdefault(o.key.encode("utf-8"), []).append(o.id)
        found: dict[str, list[_Version]] = {}
        consumer = reader(self.settings.kafka, committed=True)
        timeout = self.settings.kafka.request_timeout_s
        try:
            for p in range(partitions):
                low, high = watermarks(consumer, topic, p, timeout)
                for msg in read_range(consumer, topic, p, low, high, timeout):
                    if msg.key is None:
                        continue
                    ids = [
                        oid
                        for plan, keys in by_grant.values()
                        for oid in keys.get(plan.key(msg.key) or b"", ())
                    ]
                    if ids:
                        version = self._version(p, msg)
                        for oid in ids:
                            if version is not None:
                                found.setdefault(oid, []).append(version)
        finally:
            consumer.close()
        return found

    def _version(self, partition: int, msg: Message) -> _Version | None:
        assert msg.key is not None
        if msg.value is None:
            return _Version(partition, msg.offset, msg.ts_ms or 0, msg.key, None, None)
        try:
            record = self._decode(msg.value)
            after = _after(record)
        except (WireFormatError, RegistryError, ValueError):
            return None
        event_id = record.get("event_id")
        return _Version(partition, msg.offset, msg.ts_ms or 0, msg.key, event_id, after)

    def _watch_located(self, o: Objection) -> None:
        located = o.located
        if located is None or not located.source_key:
            return
        assert self.catalog is not None
        published = self.catalog.entries.get(o.entry)
        if published is not None:
            key = (published.source_topic, bytes.fromhex(located.source_key))
            self._watch.setdefault(key, set()).add(o.id)

    def _maybe_fixed(
        self, objection_id: str, partition: int, offset: int, after: dict[str, Any] | None
    ) -> None:
        o = self._current(objection_id)
        if o is None or o.state not in WAITING_FOR_PROVIDER or o.located is None:
            self._unwatch(objection_id)
            return
        here = o.located
        if here.partition >= 0 and (partition != here.partition or offset <= here.offset):
            return
        if here.partition < 0 and after is None:
            return  # a delete of a record the consumer never held tells it nothing it had
        grant: Grant | None = self.tables.get(self.settings.topics.grants, o.grant_id)
        plan = None if grant is None else self._plan(grant, need_salt=False)
        if plan is None or fingerprint(_view(plan, after), o.fields) == here.fingerprint:
            return  # what the consumer receives of the objected fields did not change
        if not self._delivers(o, after):
            # The consumer may not learn of a version its grant does not deliver (out of its
            # rows, or after the grant ended): the provider answers instead.
            log.info("%s: a new version its grant does not deliver; not marked fixed", o.id)
            return
        if not self._unchanged(o):
            self._unwritten.append((o.id, partition, offset, after))  # decided again next round
            return
        what = "删除了该记录" if after is None else f"更正了 {', '.join(o.fields)}"
        fixed = advance(
            o, "fix", "exchange", EXCHANGE, self.clock(), self.due, f"提供方新版本{what}"
        )
        self._write(
            event_kind("fix"), fixed, objection_notices(fixed, self._title(o), fixed.history[-1].at)
        )
        self._unwatch(objection_id)

    def _delivers(self, o: Objection, after: dict[str, Any] | None) -> bool:
        """Whether the objection's grant delivers this version to its consumer now: active,
        and the row in its filter (a delete of a key it held is delivered)."""
        grant: Grant | None = self.tables.get(self.settings.topics.grants, o.grant_id)
        if grant is None or not grant.is_active(self.clock()):
            return False
        plan = self._plan(grant, need_salt=False)
        return plan is not None and (after is None or plan.accepts(after))

    def _unwatch(self, objection_id: str) -> None:
        for ids in self._watch.values():
            ids.discard(objection_id)

    def _escalate(self, o: Objection, now: dt.datetime) -> None:
        current = self._current(o.id)
        if current is None or not overdue(current, now) or not self._unchanged(current):
            return
        late = current.model_copy(update={"escalated_at": now})
        notices = escalation_notices(late, self._title(late), self.settings.grants.operators, now)
        self._write("quality.objection.escalated", late, notices)

    def _unchanged(self, o: Objection) -> bool:
        """``o`` is still what is committed (the portal may have moved it a moment ago: a step
        decided from an older copy would undo that one)."""
        self.tables.sync()
        return self._current(o.id) == o

    def _current(self, objection_id: str) -> Objection | None:
        found: Objection | None = self.tables.get(self.settings.topics.objections, objection_id)
        return found

    def _title(self, o: Objection) -> str:
        assert self.catalog is not None
        published = self.catalog.entries.get(o.entry)
        return published.entry.title if published is not None else o.entry

    def _write(
        self,
        kind: str,
        o: Objection,
        notices: Iterable[Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """The objection's new state, its notices and the audit event, in one transaction."""
        assert self._writer is not None
        t = self.settings.topics
        happening = Happening(
            kind=kind,
            actor=self.chain,
            ts_ms=int(self.clock().timestamp() * 1000),
            details={**audit_details(o), **(extra or {})},
            grant_id=o.grant_id,
        )
        records = [OutRecord(t.objections, o.id.encode(), o.encode())]
        records += [OutRecord(t.portal_notices, n.id.encode(), n.encode()) for n in notices]
        self._writer.write([happening], with_records=records)
        self.tables.put(t.objections, o.id, o)

    # -- measures ------------------------------------------------------------------------------

    def _publish_measures(self, now: dt.datetime) -> None:
        assert self.catalog is not None
        q = self.settings.quality
        objections: dict[str, list[Objection]] = {}
        for o in self._objections().values():
            objections.setdefault(o.entry, []).append(o)
        results = self.checks.results(q.check_samples)
        measured = []
        for e in self.catalog.entries.values():
            tally = self.tallies.setdefault(e.entry.id, EntryTally(fields=()))
            measured.append(
                measure(
                    e.entry.id,
                    e.entry.provider,
                    e.entry.update_cycle,
                    tally,
                    objection_figures(objections.get(e.entry.id, ())),
                    results.get(e.entry.id, ()),
                    now,
                    q.late_factor,
                    q.weights,
                )
            )
        departments = department_scores(measured)
        self.latest = {m.entry: m for m in measured}
        self.metrics.show(measured, departments, dict(self.undecodable))
        t = self.settings.topics
        rows = [(m.entry, json.dumps(m.as_json(), ensure_ascii=False).encode()) for m in measured]
        publish(self.settings.kafka, t.quality_measures, rows)
        if time.monotonic() - self._last_scores >= q.score_every_s or not self._last_scores:
            self._last_scores = time.monotonic()
            history = [
                (m.entry, _score_row(m.entry, m.provider, now, m.score, m.parts)) for m in measured
            ]
            history += [
                (f"department:{d}", _score_row(None, d, now, s, {})) for d, s in departments.items()
            ]
            publish(self.settings.kafka, t.quality_scores, history)


class RouterYield:
    """Whether the worker should wait: the router is up (its group has members, or its
    committed offsets moved within ``MOVED_S``) and more than ``records`` behind on the source
    topics. On a shared host a reader beside it, even at nice 19, slows it (the two share the
    cores' caches and the broker): measures can wait, deliveries should not. A stopped router
    is not waited for, nor one behind for longer than ``max_s`` at once (the measures would
    starve)."""

    #: The router checkpoints (commits) at least every ``router.checkpoint_max_s`` (0.5 s)
    #: while records wait: offsets moved this recently mean it is working.
    MOVED_S = 2.0

    def __init__(self, admin: Admin | None, group: str, records: int, max_s: float) -> None:
        self._admin, self._group, self._records, self._max_s = admin, group, records, max_s
        self._committed: dict[tuple[str, int], int] = {}
        self._moved_at = float("-inf")
        self._since: float | None = None
        self._topics: list[tuple[str, int]] = []

    def watch(self, partitions: list[tuple[str, int]]) -> None:
        self._topics = partitions

    def busy(self) -> bool:
        if self._admin is None or not self._records or not self._topics:
            return False
        try:
            ends = self._admin.end_offsets(self._topics)
            committed = self._admin.committed_offsets(self._group)
            now = time.monotonic()
            mine = {tp: committed.get(tp, 0) for tp in self._topics}
            if mine != self._committed:
                self._committed, self._moved_at = mine, now
            behind = sum(max(0, ends.get(tp, 0) - off) for tp, off in mine.items())
            up = behind > self._records and (
                now - self._moved_at < self.MOVED_S or self._admin.group_members(self._group) > 0
            )
        except ExchangeError as exc:
            log.debug("cannot tell whether the router is busy: %s", exc)
            return False
        if not up:
            self._since = None
            return False
        self._since = self._since or now
        return now - self._since < self._max_s


def _score_row(
    entry: str | None, department: str, at: dt.datetime, score: float, parts: dict[str, float]
) -> bytes:
    row = {"at": at.isoformat(), "entry": entry, "department": department, "score": score}
    return json.dumps({**row, "parts": parts}, ensure_ascii=False).encode()


def _after(record: Any) -> dict[str, Any] | None:
    """A change envelope's record (``None`` for a delete); :class:`ValueError` for anything
    that is not a change envelope."""
    op = record.get("op") if isinstance(record, dict) else None
    after = record.get("after") if isinstance(record, dict) else None
    if op == "d":
        return None
    if op not in ("c", "u", "r") or not isinstance(after, dict):
        raise ValueError("not a change envelope with a record")
    return after


def _view(plan: DeliveryPlan, after: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version as the grant delivers it (projected, masked): a change to a field it redacts,
    masks away or does not deliver is no change to its consumer."""
    return None if after is None else plan.project(after)


def _field_names(record_schema_json: str) -> list[str]:
    schema = json.loads(record_schema_json)
    return [str(f["name"]) for f in schema.get("fields", [])]


def _objected(versions: list[_Version], o: Objection, plan: DeliveryPlan | None) -> _Version | None:
    """The version an objection is about: the one whose delivered event id it names (first
    round, with the salts), else the newest before the round began."""
    if plan is not None and o.event is not None and o.round == 1:
        for v in versions:
            if v.event_id is not None and plan.token("event", v.event_id) == o.event:
                return v
    since_ms = int(o.since.timestamp() * 1000)
    before = [v for v in versions if v.ts_ms <= since_ms and v.after is not None]
    if before:
        return max(before, key=lambda v: (v.ts_ms, v.offset))
    return None
