"""SCRAM credentials of department principals: created or rotated through the admin API.

The broker keeps only a salted hash; the password is shown once (or written to a file only its
owner can read) and never logged. Rotating replaces the credential at once: clients still using
the old password fail their next login.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from exchange.audit.events import Happening
from exchange.audit.writer import AuditWriter
from exchange.config import ExchangeSettings
from exchange.files import write_private
from exchange.kafka.admin import Admin
from exchange.security.acls import principal_for
from exchange.security.errors import SecurityError
from exchange.security.principals import SCRAM_ITERATIONS, client_env


@dataclass(frozen=True)
class Issued:
    principal: str
    password: str = field(repr=False)
    created: bool = False
    #: With ``out_dir``: the password file and the client environment file written.
    files: tuple[Path, ...] = ()


def issue(
    settings: ExchangeSettings,
    department: str,
    role: str,
    audit: AuditWriter,
    departments: set[str],
    out_dir: Path | None = None,
) -> Issued:
    if department not in departments:
        raise SecurityError(
            f"department {department!r} is not in {settings.departments_file}",
            code="UNKNOWN_DEPARTMENT",
        )
    sec = settings.kafka.security
    if sec.protocol != "SASL_SSL":
        raise SecurityError(
            "the broker is reached without SASL (kafka.security.protocol is PLAINTEXT): "
            "credentials need the secure platform (`exchange dev up --secure`) and the "
            "operator's settings",
            code="NOT_SECURE",
        )
    principal = principal_for(department, role)
    admin = Admin(settings.kafka)
    created = principal not in admin.scram_users()
    password = secrets.token_urlsafe(24)
    # The files first: if they cannot be written, the old password still works.
    files: tuple[Path, ...] = ()
    if out_dir is not None:
        files = _write_files(settings, principal, password, out_dir)
    # Audited before the change, like ACL changes: never a credential change without a trace.
    audit.write(
        [
            Happening(
                kind="credentials.created" if created else "credentials.rotated",
                actor=audit.chain_id,
                ts_ms=int(time.time() * 1000),
                details={"principal": f"User:{principal}", "mechanism": sec.mechanism},
                consumer=department if role == "consumer" else None,
            )
        ]
    )
    admin.upsert_scram(principal, password, sec.mechanism, SCRAM_ITERATIONS)
    return Issued(principal, password, created, files)


def _write_files(
    settings: ExchangeSettings, principal: str, password: str, out_dir: Path
) -> tuple[Path, ...]:
    password_file = out_dir / f"{principal}.password"
    env_file = out_dir / f"{principal}.env"
    reg = settings.registry
    if reg.reader_password_file is None:
        raise SecurityError(
            "registry.reader_password_file is not set (EXCHANGE_REGISTRY__READER_PASSWORD_FILE): "
            "the department's .env file needs the registry's read-only login, reading schemas "
            "needs one. Act as the operator (its .env file sets it)",
            code="NO_REGISTRY_READER",
        )
    reader_file = out_dir / f"{principal}.registry.password"
    # The CAs next to the credentials: the folder is all a department's host needs.
    cas = {
        name: settings.resolve(source)
        for name, source in (
            ("ca.pem", settings.kafka.security.ca_file),
            ("registry-ca.pem", settings.registry.ca_file),
        )
        if source is not None
    }

    def here(name: str) -> Path | None:
        return (out_dir / name).resolve() if name in cas else None

    env = client_env(
        principal,
        settings.kafka.bootstrap_servers,
        password_file.resolve(),
        here("ca.pem"),
        settings.registry.url,
        here("registry-ca.pem"),
        registry_login=(reg.reader_username, reader_file.resolve()),
        mechanism=settings.kafka.security.mechanism,
    )
    try:
        write_private(password_file, password.encode())
        for name, source in cas.items():
            (out_dir / name).write_bytes(source.read_bytes())
        write_private(reader_file, settings.resolve(reg.reader_password_file).read_bytes())
        write_private(env_file, env.encode())
    except OSError as exc:
        raise SecurityError(
            f"cannot write the credentials of {principal} to {out_dir}: {exc.strerror} "
            "(nothing was changed on the broker)",
            code="CANNOT_WRITE",
        ) from exc
    return (password_file, env_file)
