import datetime as dt

from exchange.catalog.load import load_catalog
from exchange.grants.declared import Declared, load_declared, plan_declared
from exchange.grants.model import Actor, Decision, Grant
from exchange.grants.store import GrantTable
from tests.conftest import Project

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def _load(project: Project) -> tuple[list[Declared], list[str]]:
    settings = project.settings()
    catalog = load_catalog(settings).require_valid()
    declared, problems = load_declared(settings, catalog)
    return declared, [str(p) for p in problems]


def _granted(item: Declared, **changes: object) -> Grant:
    by = Actor(department="dsj", person="李")
    grant = Grant(
        id=item.grant.id,
        request=item.grant.terms(),
        state="approved",
        requested_by=by,
        requested_at=NOW,
        decision=Decision(by=by, at=NOW),
        origin=item.origin,
    )
    return grant.model_copy(update=changes)


def test_the_sample_grants_load_and_plan_as_new(project: Project) -> None:
    declared, problems = _load(project)
    assert problems == []
    steps = plan_declared(declared, GrantTable(), NOW)
    by_id = {s.grant_id: s.actions for s in steps}
    assert by_id["mzj-population-verify"] == ("request", "approve")
    # Unconditional entry, no approval declared: approved on request.
    assert by_id["swj-legal-entity"] == ("request",)


def test_applied_grants_are_unchanged_and_changed_terms_are_amended(project: Project) -> None:
    declared, _ = _load(project)
    table = GrantTable({d.grant.id: _granted(d) for d in declared})
    assert all(s.actions == () for s in plan_declared(declared, table, NOW))
    first = declared[0]
    wider = first.grant.terms().model_copy(update={"fields": ("citizen_id", "name")})
    table.grants[first.grant.id] = _granted(first, request=wider)
    (step,) = [s for s in plan_declared(declared, table, NOW) if s.actions]
    assert step.grant_id == first.grant.id and step.actions == ("amend", "approve")


def test_removed_grants_are_revoked_and_decisions_of_departments_stand(project: Project) -> None:
    declared, _ = _load(project)
    table = GrantTable({d.grant.id: _granted(d) for d in declared})
    gone = declared[0]
    revoked = declared[1]
    table.grants[revoked.grant.id] = _granted(revoked, state="revoked")
    cli = _granted(declared[2], origin="cli")
    table.grants[cli.id] = cli
    steps = {s.grant_id: s for s in plan_declared(declared[1:], table, NOW)}
    assert steps[gone.grant.id].actions == ("revoke",)
    assert steps[revoked.grant.id].actions == () and "stays so" in steps[revoked.grant.id].note
    assert steps[cli.id].note.startswith("CONFLICT")


def test_bad_files_name_file_field_and_line(project: Project) -> None:
    project.write(
        "config/grants/bad.yaml",
        """grants:
  - id: bad-one
    consumer: nobody
    entry: gongan.resident_population
    fields: [citizen_id, no_such_field]
    purpose: data_verification
    valid_from: 2026-01-01T00:00:00+08:00
    valid_until: 2027-01-01T00:00:00+08:00
  - id: mzj-population-verify
    consumer: mzj
    entry: gongan.resident_population
    fields: [region_code]
    purpose: curiosity
    valid_from: 2026-01-01T00:00:00+08:00
    valid_until: 2027-01-01T00:00:00+08:00
""",
    )
    declared, problems = _load(project)
    text = "\n".join(problems)
    assert "bad.yaml:2: grants[0]" in text and "nobody" in text and "no_such_field" in text
    assert "bad.yaml" in text and "grants[1].purpose" in text
    assert "bad-one" not in {d.grant.id for d in declared}
