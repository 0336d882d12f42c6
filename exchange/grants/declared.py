"""Declarative grants: ``config/grants/*.yaml`` applied by ``exchange grants apply``.

A file lists grants with their terms and, for conditional entries, who approved them (the
provider's or the platform operator's sign-off, e.g. the approval document's number in the
note). Applying makes ``exchange.grants`` match the files: new grants are requested and
approved, changed terms are amended and approved again, grants removed from the files are
revoked. Every change goes through :class:`GrantStore`, so the rules and the audit trail are the
same as for the CLI. A grant revoked or rejected by a department stays so: the file cannot
overrule that decision (declare a new id to ask again). Planning is pure; applying is I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from exchange.audit.writer import AuditWriter
from exchange.catalog.load import Catalog
from exchange.config import ExchangeSettings, Problem
from exchange.config.yamlfile import load_items
from exchange.grants.model import GRANT_ID, Actor, Grant, GrantRequest, _Model
from exchange.grants.store import GrantStore, GrantTable, catalog_problems

Action = Literal["request", "amend", "approve", "revoke"]


class Approval(_Model):
    """Who approved a declared grant (有条件共享: the provider or the platform operator)."""

    department: str
    person: str = ""
    #: E.g. the approval document: 朔公审〔2026〕12号.
    note: str = ""


class DeclaredGrant(GrantRequest):
    id: Annotated[str, Field(pattern=GRANT_ID.pattern)]
    approved_by: Approval | None = None

    def terms(self) -> GrantRequest:
        return GrantRequest.model_validate(self.model_dump(exclude={"id", "approved_by"}))


@dataclass(frozen=True)
class Declared:
    grant: DeclaredGrant
    #: ``config:<file name>``: the grant's origin on the topic.
    origin: str
    file: Path
    index: int


@dataclass(frozen=True)
class Step:
    grant_id: str
    consumer: str
    entry: str
    actions: tuple[Action, ...]
    #: What the grant's state is, or why nothing is done.
    note: str
    declared: Declared | None = None
    current: Grant | None = None


def origin_of(file: Path) -> str:
    return f"config:{file.name}"


def load_declared(
    settings: ExchangeSettings, catalog: Catalog
) -> tuple[list[Declared], list[Problem]]:
    """Every declared grant, and every problem with its file, field path and line."""
    problems: list[Problem] = []
    declared: list[Declared] = []
    folder = settings.grants_dir
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
    first: dict[str, Declared] = {}
    for file in files:
        loaded = load_items(file, "grants", DeclaredGrant, problems)
        if loaded is None:
            continue
        doc, items = loaded
        for index, grant in items:
            item = Declared(grant, origin_of(file), file, index)
            line = doc.lines.get(("grants", index))
            if grant.id in first:
                seen = first[grant.id]
                problems.append(
                    Problem(
                        file,
                        f"grants[{index}].id",
                        f"duplicate grant id {grant.id!r} (first in {seen.file.name})",
                        doc.lines.get(("grants", index, "id"), line),
                    )
                )
                continue
            first[grant.id] = item
            found = catalog_problems(catalog, grant.terms())
            if grant.approved_by is not None and grant.approved_by.department not in (
                catalog.departments
            ):
                found.append(f"approved_by: unknown department {grant.approved_by.department!r}")
            problems.extend(Problem(file, f"grants[{index}]", p, line) for p in found)
            if not found:
                declared.append(item)
    return declared, problems


def plan_declared(declared: Sequence[Declared], table: GrantTable, now: dt.datetime) -> list[Step]:
    """What applying the files changes on ``exchange.grants``. Pure."""
    steps: list[Step] = []
    names = {d.grant.id for d in declared}
    for item in declared:
        wanted = item.grant
        terms = wanted.terms()
        current = table.grants.get(wanted.id)
        actions: tuple[Action, ...]
        if current is None:
            actions = ("request", "approve") if wanted.approved_by else ("request",)
            note = "new"
        elif not current.origin.startswith("config:"):
            actions, note = (), "CONFLICT: this id was requested with the CLI; use another id"
        elif current.state in ("revoked", "rejected"):
            actions = ()
            note = (
                f"{current.state} by {_decider(current)}: stays so (declare a new id to ask again)"
            )
        elif current.request != terms:
            actions = ("amend", "approve") if wanted.approved_by else ("amend",)
            note = f"terms changed (revision {current.revision} -> {current.revision + 1})"
        elif current.state == "requested" and wanted.approved_by:
            actions, note = ("approve",), "approval declared"
        else:
            actions, note = (), current.status(now)
        steps.append(Step(wanted.id, wanted.consumer, wanted.entry, actions, note, item, current))
    for grant in sorted(table.grants.values(), key=lambda g: g.id):
        if grant.id in names or not grant.origin.startswith("config:"):
            continue
        if grant.state in ("requested", "approved") and grant.status(now) != "expired":
            steps.append(
                Step(
                    grant.id,
                    grant.request.consumer,
                    grant.request.entry,
                    ("revoke",),
                    f"no longer declared (was in {grant.origin.removeprefix('config:')})",
                    None,
                    grant,
                )
            )
    return steps


def _decider(grant: Grant) -> str:
    decided = grant.revocation if grant.state == "revoked" else grant.decision
    return str(decided.by) if decided else "?"


def apply_steps(
    settings: ExchangeSettings, catalog: Catalog, steps: Sequence[Step], operator: Actor
) -> list[Step]:
    """Carry the steps out; returns them with each grant's resulting state as the note."""
    done: list[Step] = []
    stores: dict[tuple[str, str], GrantStore] = {}
    writers: dict[str, AuditWriter] = {}

    def store(actor: Actor) -> GrantStore:
        key = (actor.department, actor.person)
        if key not in stores:
            chain = actor.department
            if chain not in writers:
                writers[chain] = AuditWriter.connect(settings, f"grants.{chain}")
            stores[key] = GrantStore(settings, catalog, actor, writer=writers[chain])
        return stores[key]

    try:
        for step in steps:
            grant = step.current
            for action in step.actions:
                if action == "revoke" and grant is not None:
                    grant = store(operator).revoke(
                        step.grant_id, "no longer declared in config/grants"
                    )
                    continue
                assert step.declared is not None  # request, amend and approve come from a file
                wanted = step.declared.grant
                if action == "request":
                    grant = store(operator).request(
                        wanted.terms(), grant_id=wanted.id, origin=step.declared.origin
                    )
                elif action == "amend" and grant is not None:
                    grant = store(operator).amend(
                        grant, wanted.terms(), f"terms changed in {step.declared.file.name}"
                    )
                elif action == "approve" and wanted.approved_by is not None:
                    if grant is not None and grant.state == "approved":
                        continue  # an unconditional entry's grant was approved on request
                    by = wanted.approved_by
                    approver = Actor(department=by.department, person=by.person)
                    note = by.note or f"declared in {step.declared.file.name}"
                    grant = store(approver).approve(step.grant_id, note)
            note = step.note if grant is None else _state(grant, catalog)
            done.append(
                Step(
                    step.grant_id,
                    step.consumer,
                    step.entry,
                    step.actions,
                    note,
                    step.declared,
                    grant,
                )
            )
    finally:
        for writer in writers.values():
            writer.close()
    return done


def _state(grant: Grant, catalog: Catalog) -> str:
    status = grant.status(dt.datetime.now(dt.UTC))
    if status == "requested":
        loaded = catalog.entries.get(grant.request.entry)
        provider = loaded.entry.provider if loaded else "the provider"
        return f"requested: awaiting approval by {provider} or an operator"
    return status
