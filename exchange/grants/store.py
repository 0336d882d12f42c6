"""Grant state on ``exchange.grants``: read it, change it, and audit every change with it.

Each change writes the grant's new JSON value and its audit event in one Kafka transaction (the
writer's audit chain is ``grants.<department>`` of whoever acts), so there is never a grant change
without its audit event or the other way round. Requests are checked against the local catalog
configuration (departments, entries and their schemas), the platform's source of truth.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter, OutRecord
from exchange.catalog.avro import FieldType, record_fields
from exchange.catalog.load import Catalog
from exchange.catalog.model import CatalogEntry
from exchange.config import ExchangeSettings
from exchange.grants.model import PURPOSE_LABELS, Actor, Grant, GrantRequest
from exchange.grants.rules import GrantError, approve, new_grant, reject, request_problems, revoke
from exchange.kafka.control import read_all


@dataclass
class GrantTable:
    grants: dict[str, Grant] = field(default_factory=dict)
    #: Values on the topic that are not grants: why, by key.
    unreadable: dict[str, str] = field(default_factory=dict)


def read_grants(settings: ExchangeSettings) -> GrantTable:
    """The current grants (committed writes only), with anything unreadable set aside."""
    table = GrantTable()
    for msg in read_all(settings.kafka, settings.topics.grants, committed=True):
        key = (msg.key or b"").decode("utf-8", errors="replace")
        table.unreadable.pop(key, None)
        if msg.value is None:
            table.grants.pop(key, None)
            continue
        try:
            table.grants[key] = Grant.decode(msg.value)
        except ValidationError as exc:
            table.grants.pop(key, None)
            where = f"{settings.topics.grants} partition {msg.partition} offset {msg.offset}"
            table.unreadable[key] = f"{where}: {exc.error_count()} problem(s): {exc}"
    return table


def catalog_problems(catalog: Catalog, request: GrantRequest) -> list[str]:
    """What is wrong with ``request`` against the catalog configuration (empty: nothing)."""
    loaded = catalog.entries.get(request.entry)
    fields: dict[str, FieldType] = record_fields(loaded.schema) if loaded and loaded.schema else {}
    return request_problems(
        request, loaded.entry if loaded else None, fields, set(catalog.departments)
    )


def grant_id_for(request: GrantRequest) -> str:
    base = f"{request.consumer}-{request.entry}".replace(".", "-").replace("_", "-").lower()
    base = re.sub(r"[^a-z0-9-]", "", base)[:50]
    return f"{base}-{secrets.token_hex(3)}"


def grant_summary(grant: Grant) -> dict[str, Any]:
    """What an audit event says about a grant: its terms and its state."""
    req = grant.request
    return {
        "state": grant.state,
        "revision": grant.revision,
        "fields": list(req.fields),
        "purpose": req.purpose,
        "purpose_label": PURPOSE_LABELS[req.purpose],
        "purpose_text": req.purpose_text,
        "legal_basis": req.legal_basis,
        "valid_from": req.valid_from.isoformat(),
        "valid_until": req.valid_until.isoformat(),
        "row_filter": [p.model_dump() for p in req.row_filter],
        "masks": {k: m.model_dump() for k, m in req.masks.items()},
        "origin": grant.origin,
    }


class GrantStore:
    """Grant changes made by one actor; each one is checked, stored and audited."""

    def __init__(
        self,
        settings: ExchangeSettings,
        catalog: Catalog,
        actor: Actor,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        writer: AuditWriter | None = None,
        grants: Callable[[], GrantTable] | None = None,
        also: Callable[[Grant, str], Sequence[OutRecord]] | None = None,
    ) -> None:
        self.settings = settings
        #: Where the current grants come from: the topic read whole (the CLI), or a table a
        #: service follows (the portal).
        self._grants = grants or (lambda: read_grants(settings))
        #: Records written with each change, in its transaction (the portal's notices).
        self._also = also
        self.catalog = catalog
        self.actor = actor
        self.clock = clock
        # One writer per audit chain (``grants.<department>``) and process: a second one would
        # fence the first. Stores of two people of one department share it.
        self._writer = writer
        self._owns_writer = writer is None

    # -- reading -----------------------------------------------------------------------------

    def table(self) -> GrantTable:
        return self._grants()

    def get(self, grant_id: str) -> Grant:
        grant = self.table().grants.get(grant_id)
        if grant is None:
            raise GrantError(
                f"no grant {grant_id!r} on {self.settings.topics.grants}", code="NO_GRANT"
            )
        return grant

    def entry(self, entry_id: str) -> CatalogEntry | None:
        loaded = self.catalog.entries.get(entry_id)
        return loaded.entry if loaded else None

    def problems(self, request: GrantRequest) -> list[str]:
        return catalog_problems(self.catalog, request)

    # -- changing ----------------------------------------------------------------------------

    def request(
        self, request: GrantRequest, *, grant_id: str | None = None, origin: str = "cli"
    ) -> Grant:
        """Files a request; an unconditional entry's request is approved at once if configured."""
        problems = self.problems(request)
        if problems:
            raise GrantError(
                "request refused:\n" + "\n".join(f"  {p}" for p in problems), code="BAD_REQUEST"
            )
        if self.actor.department not in (request.consumer, *self.settings.grants.operators):
            raise GrantError(
                f"{self.actor.department} may not request for {request.consumer}: a department "
                "requests for itself (or a platform operator for it)",
                code="NOT_ALLOWED",
            )
        grant_id = grant_id or grant_id_for(request)
        if grant_id in self.table().grants:
            raise GrantError(f"grant {grant_id!r} already exists", code="EXISTS")
        grant = new_grant(grant_id, request, self.actor, self.clock(), origin=origin)
        self._save(grant, "grant.requested")
        entry = self.entry(request.entry)
        if (
            entry is not None
            and entry.sharing == "unconditional"
            and self.settings.grants.auto_approve_unconditional
        ):
            platform = Actor(department="platform", person="auto-approval")
            grant = approve(grant, entry, platform, self.clock(), (), "unconditional (无条件共享)")
            self._save(grant, "grant.approved")
        return grant

    def approve(self, grant_id: str, note: str = "", terms: GrantRequest | None = None) -> Grant:
        """``terms``: what is granted, if narrower than asked (``rules.narrowed``)."""
        grant = self.get(grant_id)
        entry = self._entry_of(grant)
        operators = self.settings.grants.operators
        done = approve(grant, entry, self.actor, self.clock(), operators, note, terms)
        self._save(done, "grant.approved")
        return done

    def reject(self, grant_id: str, note: str = "") -> Grant:
        grant = self.get(grant_id)
        entry = self._entry_of(grant)
        done = reject(grant, entry, self.actor, self.clock(), self.settings.grants.operators, note)
        self._save(done, "grant.rejected")
        return done

    def revoke(self, grant_id: str, note: str = "") -> Grant:
        grant = self.get(grant_id)
        entry = self.entry(grant.request.entry)
        done = revoke(grant, entry, self.actor, self.clock(), self.settings.grants.operators, note)
        self._save(done, "grant.revoked")
        return done

    def amend(self, grant: Grant, request: GrantRequest, note: str) -> Grant:
        """New terms for a declared grant (``grants apply``); it must be approved again."""
        problems = self.problems(request)
        if problems:
            raise GrantError(
                f"{grant.id}: new terms refused:\n" + "\n".join(f"  {p}" for p in problems),
                code="BAD_REQUEST",
            )
        changed = grant.model_copy(
            update={
                "request": request,
                "state": "requested",
                "decision": None,
                "requested_by": self.actor,
                "requested_at": self.clock(),
                "revision": grant.revision + 1,
            }
        )
        self._save(changed, "grant.amended", note)
        return changed

    def _entry_of(self, grant: Grant) -> CatalogEntry:
        entry = self.entry(grant.request.entry)
        if entry is None:
            raise GrantError(
                f"{grant.id}: entry {grant.request.entry} is no longer in the catalog",
                code="UNKNOWN_ENTRY",
            )
        return entry

    def _save(self, grant: Grant, kind: str, note: str = "") -> None:
        if self._writer is None:
            self._writer = AuditWriter.connect(self.settings, f"grants.{self.actor.department}")
        decided = grant.revocation if kind == "grant.revoked" else grant.decision
        details = grant_summary(grant)
        if note or (decided is not None and decided.note):
            details["note"] = note or (decided.note if decided else "")
        happening = Happening(
            kind=kind,
            actor=str(decided.by if decided and kind != "grant.requested" else self.actor),
            ts_ms=int(self.clock().timestamp() * 1000),
            details=details,
            entry=grant.request.entry,
            consumer=grant.request.consumer,
            grant_id=grant.id,
        )
        record = OutRecord(self.settings.topics.grants, grant.id.encode("utf-8"), grant.encode())
        also = self._also(grant, kind) if self._also is not None else ()
        self._writer.write([happening], with_records=[record, *also])

    def close(self) -> None:
        if self._writer is not None and self._owns_writer:
            self._writer.close()
