"""`exchange grants apply` against the real broker: idempotent, amends, revokes, audited."""

from __future__ import annotations

from typer.testing import CliRunner

from exchange.audit.trail import Query, query, read_trail
from exchange.catalog.apply import apply_catalog
from exchange.catalog.load import load_catalog
from exchange.cli.main import app
from exchange.files import make_secret
from exchange.grants.store import read_grants
from tests.integration.conftest import IsolatedProject


def _grant(uid: str, gid: str, fields: str, approved: bool = True) -> str:
    approval = f"    approved_by: {{department: {uid}, person: 王科长, note: 审〔2026〕1号}}\n"
    return (
        f"  - id: {gid}\n"
        f"    consumer: {uid}_c\n"
        f"    entry: {uid}.people\n"
        f"    fields: [{fields}]\n"
        "    purpose: data_verification\n"
        "    legal_basis: 测试依据\n"
        "    valid_from: 2026-01-01T00:00:00+08:00\n"
        "    valid_until: 2099-01-01T00:00:00+08:00\n" + (approval if approved else "")
    )


def test_grants_apply_converges_and_audits_every_change(isolated: IsolatedProject) -> None:
    uid = isolated.uid
    isolated.write(
        "config/departments.yaml",
        "departments:\n"
        f"  - {{id: {uid}, name: 测试公安, level: city, region_code: '140600'}}\n"
        f"  - {{id: {uid}_c, name: 测试民政, level: city, region_code: '140600'}}\n"
        "  - {id: dsj, name: 大数据局, level: city, region_code: '140600'}\n",
    )
    settings = isolated.settings()
    assert settings.audit.key_file is not None
    make_secret(settings.resolve(settings.audit.key_file))
    apply_catalog(load_catalog(settings).require_valid(), settings)
    for f in (isolated.root / "config/grants").glob("*.yaml"):
        f.unlink()
    isolated.write(
        "config/grants/test.yaml",
        "grants:\n"
        + _grant(uid, f"{uid}-a", "citizen_id")
        + _grant(uid, f"{uid}-b", "citizen_id", approved=False),
    )
    runner = CliRunner()
    args = ["--config", str(isolated.exchange_yaml), "grants", "apply", "--by", "测试员"]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    grants = read_grants(settings).grants
    assert grants[f"{uid}-a"].state == "approved"
    assert grants[f"{uid}-a"].decision is not None
    assert grants[f"{uid}-a"].decision.by.department == uid
    assert grants[f"{uid}-b"].state == "requested"
    assert "awaiting approval" in first.output

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert read_grants(settings).grants == grants  # idempotent: nothing written

    # New terms for a; b dropped from the file.
    isolated.write(
        "config/grants/test.yaml", "grants:\n" + _grant(uid, f"{uid}-a", "citizen_id, name")
    )
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert "amend, approve" in dry.output and "revoke" in dry.output
    assert read_grants(settings).grants == grants
    changed = runner.invoke(app, args)
    assert changed.exit_code == 0, changed.output
    after = read_grants(settings).grants
    assert after[f"{uid}-a"].revision == grants[f"{uid}-a"].revision + 2  # amended, approved
    assert after[f"{uid}-a"].state == "approved"
    assert after[f"{uid}-a"].request.fields == ("citizen_id", "name")
    assert after[f"{uid}-b"].state == "revoked"

    kinds = [e.kind for e in query(read_trail(settings), Query()) if e.grant_id in after]
    assert kinds.count("grant.requested") == 2
    assert kinds.count("grant.approved") == 2
    assert kinds.count("grant.amended") == 1 and kinds.count("grant.revoked") == 1
