"""Grant salts derived in the router from its own secret, never written to a topic."""

from __future__ import annotations

import json
import os

import pytest

from exchange.config.settings import KafkaSecurity
from exchange.grants.model import Grant
from exchange.routing.salts import GrantSalts, SaltSecretError
from tests.conftest import Project


def test_each_grant_gets_its_own_stable_salt() -> None:
    salts = GrantSalts(b"s" * 32)
    assert salts.salt("g1") == GrantSalts(b"s" * 32).salt("g1")
    assert salts.salt("g1") != salts.salt("g2")
    assert salts.salt("g1") != GrantSalts(b"t" * 32).salt("g1")
    assert salts.fingerprint != GrantSalts(b"t" * 32).fingerprint
    assert "s" * 8 not in repr(salts)


def test_the_secret_is_made_once_private_and_refused_when_others_can_read_it(
    project: Project,
) -> None:
    settings = project.settings()
    path = settings.resolve(settings.router.salt_secret_file)
    made, was_made = GrantSalts.load(settings)
    assert was_made and path.stat().st_mode & 0o777 == 0o600
    again, made_again = GrantSalts.load(settings)
    assert not made_again and again == made
    os.chmod(path, 0o640)
    with pytest.raises(SaltSecretError, match=r"readable by others .*chmod 600") as info:
        GrantSalts.load(settings)
    assert info.value.code == "SALT_SECRET_EXPOSED"
    os.chmod(path, 0o600)
    path.write_text("zz\n")
    with pytest.raises(SaltSecretError, match=r"router.salt_secret_file .*: not hex"):
        GrantSalts.load(settings)


def test_a_grant_record_carries_no_salt_and_old_records_with_one_still_read(
    grant_record: bytes,
) -> None:
    old = json.loads(grant_record)
    old["salt"] = "ab" * 16
    grant = Grant.decode(json.dumps(old).encode())
    assert "salt" not in json.loads(grant.encode())
    assert not hasattr(grant.terms(), "salt")


@pytest.fixture
def grant_record() -> bytes:
    return json.dumps(
        {
            "id": "g1",
            "request": {
                "consumer": "mzj",
                "entry": "gongan.resident_population",
                "fields": ["citizen_id"],
                "purpose": "data_verification",
                "legal_basis": "依据",
                "valid_from": "2026-01-01T00:00:00+08:00",
                "valid_until": "2027-01-01T00:00:00+08:00",
            },
            "state": "requested",
            "requested_by": {"department": "mzj", "person": "王"},
            "requested_at": "2026-01-01T00:00:00+08:00",
        }
    ).encode()


def test_a_secure_router_never_makes_its_own_secret(project: Project) -> None:
    """Workers with different secrets hash every key differently: on a secure platform the file
    must come from the deployment, not from the first worker that starts."""
    settings = project.settings()
    security = KafkaSecurity(
        protocol="SASL_SSL", username="router", password_file=project.root / "p"
    )
    kafka = settings.kafka.model_copy(update={"security": security})
    secure = settings.model_copy(update={"kafka": kafka})
    with pytest.raises(SaltSecretError, match=r"does not exist\. Every router worker") as info:
        GrantSalts.load(secure)
    assert info.value.code == "NO_SALT_SECRET"
    assert not secure.resolve(secure.router.salt_secret_file).exists()
