"""How a principal is set up on a client: its SCRAM strength and its environment file."""

from __future__ import annotations

from pathlib import Path

#: SCRAM iterations for every credential we create (RFC 7677 asks for at least 4096; the
#: broker accepts up to 16384).
SCRAM_ITERATIONS = 8192


def client_env(
    principal: str,
    bootstrap: str,
    password_file: Path,
    ca_file: Path | None,
    registry_url: str,
    registry_ca_file: Path | None = None,
    registry_login: tuple[str, Path] | None = None,
    registry_reader: Path | None = None,
    mechanism: str = "SCRAM-SHA-512",
    signing_key_file: Path | None = None,
    salt_secret_file: Path | None = None,
) -> str:
    """An environment file that makes every exchange command act as ``principal``."""
    lines = [
        f"# `exchange` commands as {principal}: set -a; . {{this file}}; set +a",
        f"EXCHANGE_KAFKA__BOOTSTRAP_SERVERS={bootstrap}",
        "EXCHANGE_KAFKA__SECURITY__PROTOCOL=SASL_SSL",
        f"EXCHANGE_KAFKA__SECURITY__MECHANISM={mechanism}",
        f"EXCHANGE_KAFKA__SECURITY__USERNAME={principal}",
        f"EXCHANGE_KAFKA__SECURITY__PASSWORD_FILE={password_file}",
        f"EXCHANGE_REGISTRY__URL={registry_url}",
    ]
    if ca_file is not None:
        lines.append(f"EXCHANGE_KAFKA__SECURITY__CA_FILE={ca_file}")
    if registry_ca_file is not None:
        lines.append(f"EXCHANGE_REGISTRY__CA_FILE={registry_ca_file}")
    # The registry login: a writer's own, the shared read-only one, or none (which also
    # clears a login inherited from the shell, the operator's).
    user, secret = registry_login if registry_login is not None else ("", "")
    lines += [
        f"EXCHANGE_REGISTRY__USERNAME={user}",
        f"EXCHANGE_REGISTRY__PASSWORD_FILE={secret}",
    ]
    if registry_reader is not None:
        lines.append(f"EXCHANGE_REGISTRY__READER_PASSWORD_FILE={registry_reader}")
    # The principal's own audit signing key, or none (clears the operator's from the shell);
    # and no shared HMAC key: in secure mode each writer's signature says who wrote an event.
    lines.append(f"EXCHANGE_AUDIT__SIGNING_KEY_FILE={signing_key_file or ''}")
    lines.append("EXCHANGE_AUDIT__KEY_FILE=")
    if salt_secret_file is not None:  # the router's: the grants' salts derive from it
        lines.append(f"EXCHANGE_ROUTER__SALT_SECRET_FILE={salt_secret_file}")
    return "\n".join(lines) + "\n"
