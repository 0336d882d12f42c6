"""The local platform's secure mode: SCRAM over TLS, the KRaft authorizer, a protected registry.

Everything here is text and files: the broker's and the registry's settings, the platform's own
principals and their passwords (files readable only by their owner), and one environment file
per principal that points a client at them. ``platform.py`` starts the processes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from exchange.audit.signing import Signer
from exchange.config.settings import DevPlatformSettings
from exchange.devplatform.tls import TlsFiles, ensure_tls
from exchange.files import write_private

#: The platform's SCRAM users. ``broker`` (the broker to itself) is created when the storage is
#: formatted, the others through the admin API at every start. ``operator``: the platform
#: operator (catalog, grants, credentials, ACLs); ``router``; ``monitor``; ``registry``: the
#: schema registry's storage.
SCRAM_PRINCIPALS = ("broker", "operator", "router", "monitor", "registry")
#: Allowed everything by the authorizer. The router and the monitor are not: they get ACLs
#: from ``exchange acl sync`` like every department.
SUPER_USERS = ("broker", "controller", "operator", "registry")
#: Registry users allowed to register schemas (``catalog apply``; the router registers
#: delivery and audit schemas). Reading schemas needs no login.
REGISTRY_WRITERS = ("operator", "router")
#: Principals that write audit chains, each signing with its own Ed25519 key (made here;
#: the operator registers them with `exchange audit keys add`).
AUDIT_WRITERS = ("operator", "router")
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class SecureFiles:
    """Where secure mode keeps its files, under ``<state>/secure``."""

    root: Path

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.under(self.root / "tls")

    def password_file(self, principal: str) -> Path:
        return self.root / "credentials" / f"{principal}.password"

    def signing_key_file(self, principal: str) -> Path:
        return self.root / "keys" / f"{principal}.audit-signing.pem"

    @property
    def salt_secret_file(self) -> Path:
        """The router's secret the grants' salts derive from (made by its first start)."""
        return self.root / "keys" / "router.salt-secret"

    def env_file(self, principal: str) -> Path:
        return self.root / "env" / f"{principal}.env"

    def password(self, principal: str) -> str:
        """The principal's password, created (once) if it has none yet."""
        path = self.password_file(principal)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24).encode())
        return path.read_text().strip()


def prepare(files: SecureFiles) -> TlsFiles:
    """Certificates and the platform's passwords (kept across restarts)."""
    tls = ensure_tls(files.root / "tls")
    for principal in (*SCRAM_PRINCIPALS, "controller"):
        files.password(principal)
    for principal in AUDIT_WRITERS:
        Signer.create(files.signing_key_file(principal))
    return tls


def jaas(module: str, user: str, password: str, **extra: str) -> str:
    options = " ".join(f'{k}="{v}"' for k, v in {"username": user, "password": password}.items())
    more = "".join(f' {k}="{v}"' for k, v in extra.items())
    return f"{module} required {options}{more};"


def kafka_properties(dev: DevPlatformSettings, files: SecureFiles) -> list[str]:
    """The listener, authentication and authorization lines of the broker's settings."""
    tls = files.tls
    controller = files.password("controller")
    return [
        f"listeners=SASL_SSL://localhost:{dev.kafka_port},"
        f"CONTROLLER://localhost:{dev.controller_port}",
        f"advertised.listeners=SASL_SSL://localhost:{dev.kafka_port}",
        "controller.listener.names=CONTROLLER",
        # The controller listener only carries the node's talk to itself, on loopback: SASL
        # PLAIN with a static user there, since KRaft controllers cannot use SCRAM (the
        # credentials live in the metadata they serve).
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
        "inter.broker.listener.name=SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        + jaas(SCRAM_LOGIN, "broker", files.password("broker")),
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config="
        + jaas(PLAIN_LOGIN, "controller", controller, user_controller=controller),
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls.server_pem}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls.ca_cert}",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=" + ";".join(f"User:{p}" for p in SUPER_USERS),
        # Nobody gets anything no ACL grants.
        "allow.everyone.if.no.acl.found=false",
    ]


def scram_format_args(files: SecureFiles) -> list[str]:
    """``--add-scram`` of ``kafka-storage format``: the broker's own principal, which must
    exist before the first login. It is briefly on that tool's command line; every other
    principal is created through the admin API once the broker runs."""
    credential = f"{MECHANISM}=[name=broker,password={files.password('broker')}]"
    return ["--add-scram", credential]


def registry_properties(dev: DevPlatformSettings, files: SecureFiles, bootstrap: str) -> str:
    """Apicurio's ``config/application.properties``: HTTPS, who may write, how to reach Kafka.

    Authorization is Quarkus' path-based HTTP security with users embedded in this file:
    reading schemas (GET) is open, registering or changing them needs a user with the
    ``platform`` role. Apicurio's own role-based authorization needs an OIDC server.
    """
    tls = files.tls
    lines = [
        "# Written by `exchange dev up --secure`; edits are overwritten.",
        f"quarkus.http.ssl-port={dev.registry_port}",
        "quarkus.http.insecure-requests=disabled",
        f"quarkus.http.ssl.certificate.files={tls.server_cert}",
        f"quarkus.http.ssl.certificate.key-files={tls.server_key}",
        "quarkus.http.auth.basic=true",
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=true",
    ]
    for user in REGISTRY_WRITERS:
        lines += [
            f"quarkus.security.users.embedded.users.{user}={files.password(user)}",
            f"quarkus.security.users.embedded.roles.{user}=platform",
        ]
    lines += [
        # Apicurio's own check asks every caller to log in once any login exists; reading
        # stays open, as the path rules below say.
        "apicurio.auth.anonymous-read-access.enabled=true",
        "quarkus.http.auth.permission.health.paths=/health,/health/*",
        "quarkus.http.auth.permission.health.policy=permit",
        "quarkus.http.auth.permission.read.paths=/apis/*",
        "quarkus.http.auth.permission.read.methods=GET,HEAD,OPTIONS",
        "quarkus.http.auth.permission.read.policy=permit",
        # Apicurio's admin API (export, configuration) only for the platform, even reads.
        "quarkus.http.auth.permission.admin.paths=/apis/registry/v3/admin/*",
        "quarkus.http.auth.permission.admin.policy=platform",
        "quarkus.http.auth.permission.write.paths=/apis/*",
        "quarkus.http.auth.permission.write.methods=POST,PUT,DELETE,PATCH",
        "quarkus.http.auth.permission.write.policy=platform",
        "quarkus.http.auth.policy.platform.roles-allowed=platform",
        "quarkus.http.auth.permission.rest.paths=/*",
        "quarkus.http.auth.permission.rest.policy=deny",
        # The registry keeps its schemas in Kafka, as the super user `registry`.
        "apicurio.kafka.common.security.protocol=SASL_SSL",
        f"apicurio.kafka.common.sasl.mechanism={MECHANISM}",
        "apicurio.kafka.common.sasl.jaas.config="
        + jaas(SCRAM_LOGIN, "registry", files.password("registry")),
        "apicurio.kafka.common.ssl.truststore.type=PEM",
        f"apicurio.kafka.common.ssl.truststore.location={tls.ca_cert}",
        "",
    ]
    return "\n".join(lines)
