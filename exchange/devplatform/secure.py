"""The secure platform: SCRAM over TLS, the KRaft authorizer, a protected registry.

Everything here is text and files: the broker's and the registry's settings, the platform's own
principals and their passwords (files readable only by their owner), and one environment file
per principal that points a client at them. ``platform.py`` starts the local platform's
processes from them; `exchange deploy secure-files` writes the same files for
``docker-compose.yml`` (hosts named ``kafka`` and ``registry``, the files under ``/secrets``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from exchange.audit.signing import Signer
from exchange.config.settings import DevPlatformSettings, KafkaSecurity, KafkaSettings
from exchange.devplatform.tls import TlsFiles, ensure_tls
from exchange.files import make_secret, write_private
from exchange.kafka.admin import Admin
from exchange.security.principals import SCRAM_ITERATIONS, client_env

#: The platform's SCRAM users. ``broker`` (the broker to itself) is created when the storage is
#: formatted, the others through the admin API at every start. ``operator``: the platform
#: operator (catalog, grants, credentials, ACLs); ``router``; ``monitor``; ``registry``: the
#: schema registry's storage; ``portal``: the departments' portal (its replicas); ``quality``:
#: the quality worker.
SCRAM_PRINCIPALS = ("broker", "operator", "router", "monitor", "registry", "portal", "quality")
#: Passwords that are not Kafka principals: the controller's, and the registry reader's.
OTHER_SECRETS = ("controller", "registry-reader")
#: Allowed everything by the authorizer. The router and the monitor are not: they get ACLs
#: from ``exchange acl sync`` like every department.
SUPER_USERS = ("broker", "controller", "operator", "registry")
#: Registry users allowed to register schemas (``catalog apply``; the router registers
#: delivery and audit schemas; the portal the audit schema, if it is first).
REGISTRY_WRITERS = ("operator", "router", "portal")
#: The read-only registry login every other principal uses (departments get it in their
#: ``.env`` files from `exchange dept credentials`): reading schemas needs a login too. One
#: shared login because the registry's users are fixed at its start, while departments come
#: and go; per-department registry users need Apicurio's OIDC integration.
REGISTRY_READER = "registry-reader"
#: Principals that write audit chains, each signing with its own Ed25519 key (made here;
#: the operator registers them with `exchange audit keys add`).
AUDIT_WRITERS = ("operator", "router", "portal", "quality")
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


@dataclass(frozen=True)
class Endpoints:
    """Where the broker and the registry listen, and the names clients reach them by."""

    kafka_host: str = "localhost"
    kafka_port: int = 9092
    controller_port: int = 9093
    registry_host: str = "localhost"
    registry_port: int = 8081
    #: The interface the broker binds: ``localhost`` on a developer's machine, every
    #: interface (``0.0.0.0``) in a container.
    listen_host: str = "localhost"

    @classmethod
    def local(cls, dev: DevPlatformSettings) -> Endpoints:
        return cls(
            kafka_port=dev.kafka_port,
            controller_port=dev.controller_port,
            registry_port=dev.registry_port,
        )

    @property
    def bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        return f"https://{self.registry_host}:{self.registry_port}/apis/ccompat/v7"

    @property
    def certificate_hosts(self) -> tuple[str, ...]:
        names = dict.fromkeys((self.kafka_host, self.registry_host, "localhost", "127.0.0.1"))
        return tuple(names)


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


def prepare(files: SecureFiles, endpoints: Endpoints | None = None) -> TlsFiles:
    """Certificates, the platform's passwords and keys (kept across restarts)."""
    hosts = ("localhost", "127.0.0.1") if endpoints is None else endpoints.certificate_hosts
    tls = ensure_tls(files.root / "tls", hosts)
    for principal in (*SCRAM_PRINCIPALS, *OTHER_SECRETS):
        files.password(principal)
    for user in REGISTRY_WRITERS:
        files.password(registry_secret(user))
    for principal in AUDIT_WRITERS:
        Signer.create(files.signing_key_file(principal))
    make_secret(files.salt_secret_file)
    return tls


def registry_secret(user: str) -> str:
    """The name of a registry user's password: the registry's own, not the user's Kafka
    password (a leaked registry settings file, or guessing over its HTTP login, must not give
    away a Kafka super user's)."""
    return user if user == REGISTRY_READER else f"{user}.registry"


def create_principals(admin: Admin, files: SecureFiles) -> None:
    """The platform's principals, with their stored passwords (idempotent, every start).

    Created through the admin API, not on the storage tool's command line, where any local
    user could read the passwords. ``admin`` acts as ``broker`` (:func:`broker_settings`).
    """
    for principal in SCRAM_PRINCIPALS:
        if principal != "broker":
            password = files.password(principal)
            admin.upsert_scram(principal, password, MECHANISM, SCRAM_ITERATIONS)


def broker_settings(bootstrap: str, files: SecureFiles) -> KafkaSettings:
    """How the platform itself reaches its broker: as ``broker``, the only principal created
    when the storage is formatted."""
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        security=KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=MECHANISM,
            username="broker",
            password_file=files.password_file("broker"),
            ca_file=files.tls.ca_cert,
        ),
    )


def jaas(module: str, user: str, password: str, **extra: str) -> str:
    options = " ".join(f'{k}="{v}"' for k, v in {"username": user, "password": password}.items())
    more = "".join(f' {k}="{v}"' for k, v in extra.items())
    return f"{module} required {options}{more};"


#: Where a principal's file is referenced from: ``(the file in the secrets tree, the name it
#: has in a client's own folder)`` -> the path its environment file names.
Place = Callable[[Path, str], Path]


def _principal_env(files: SecureFiles, endpoints: Endpoints, principal: str, place: Place) -> str:
    """The environment file's text for ``principal``, naming its files where ``place`` puts
    them: its Kafka and registry logins, the CA, its signing key, the router's salt secret, the
    read-only registry login the operator hands to departments (`dept credentials`)."""
    login = principal if principal in REGISTRY_WRITERS else REGISTRY_READER
    ca = place(files.tls.ca_cert, "ca.pem")
    return client_env(
        principal,
        endpoints.bootstrap,
        place(files.password_file(principal), "kafka.password"),
        ca,
        endpoints.registry_url,
        ca,
        registry_login=(
            login,
            place(files.password_file(registry_secret(login)), "registry.password"),
        ),
        registry_reader=(
            place(files.password_file(REGISTRY_READER), "registry-reader.password")
            if principal == "operator"
            else None
        ),
        signing_key_file=(
            place(files.signing_key_file(principal), "audit-signing.pem")
            if principal in AUDIT_WRITERS
            else None
        ),
        salt_secret_file=(
            # The quality worker hashes as the router does, to find the record a consumer
            # names by its hashed key or event id (quality/worker.py).
            place(files.salt_secret_file, "salt-secret")
            if principal in ("router", "quality")
            else None
        ),
    )


def env_files(files: SecureFiles, endpoints: Endpoints) -> None:
    """One environment file per platform principal (the broker's and registry's excepted),
    naming the files where they are in the secrets tree (the local platform)."""
    for principal in SCRAM_PRINCIPALS:
        if principal not in ("broker", "registry"):
            text = _principal_env(files, endpoints, principal, lambda source, _name: source)
            write_private(files.env_file(principal), text.encode())


def write_bundle(files: SecureFiles, endpoints: Endpoints, principal: str, folder: Path) -> Path:
    """Everything ``principal`` needs, and nothing else, in ``folder``: its passwords, keys,
    the CA and an environment file naming them. A container mounts only its own folder, so a
    compromised connector or registry cannot read the operator's password or the router's
    secrets. Returns the environment file."""

    def copy(source: Path, name: str) -> Path:
        target = folder / name
        write_private(target, source.read_bytes())
        return target

    env = folder / f"{principal}.env"
    write_private(env, _principal_env(files, endpoints, principal, copy).encode())
    return env


def server_properties(endpoints: Endpoints, listeners: list[str], log_dir: str) -> str:
    """A single-node KRaft broker's ``server.properties`` (both modes)."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=localhost:{endpoints.controller_port}",
            *listeners,
            f"log.dirs={log_dir}",
            "num.partitions=1",
            # One broker: internal topics cannot have more replicas than that.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # No 3 s wait before the first consumer group rebalance: tests start faster.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # A transaction left open holds back every read-committed reader of its partitions
            # (a department's connector: its own source topics and the shared DLQ) until the
            # broker aborts it; 5 min rather than 15 (connectors ask for their
            # delivery_timeout_s, at most 300 s; the router for 60 s).
            "transaction.max.timeout.ms=300000",
            "",
        ]
    )


def kafka_properties(endpoints: Endpoints, files: SecureFiles) -> list[str]:
    """The listener, authentication and authorization lines of the broker's settings."""
    tls = files.tls
    controller = files.password("controller")
    ep = endpoints
    return [
        f"listeners=SASL_SSL://{ep.listen_host}:{ep.kafka_port},"
        f"CONTROLLER://localhost:{ep.controller_port}",
        f"advertised.listeners=SASL_SSL://{ep.bootstrap}",
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


def registry_properties(endpoints: Endpoints, files: SecureFiles) -> str:
    """Apicurio's ``config/application.properties``: HTTPS, who may write, how to reach Kafka.

    Authorization is Quarkus' path-based HTTP security with users embedded in this file:
    reading schemas (GET) is open, registering or changing them needs a user with the
    ``platform`` role. Apicurio's own role-based authorization needs an OIDC server.
    """
    tls = files.tls
    lines = [
        "# Written by `exchange dev up --secure`; edits are overwritten.",
        f"quarkus.http.ssl-port={endpoints.registry_port}",
        "quarkus.http.insecure-requests=disabled",
        f"quarkus.http.ssl.certificate.files={tls.server_cert}",
        f"quarkus.http.ssl.certificate.key-files={tls.server_key}",
        "quarkus.http.auth.basic=true",
        "quarkus.security.users.embedded.enabled=true",
        "quarkus.security.users.embedded.plain-text=true",
    ]
    for user, role in (*((w, "platform") for w in REGISTRY_WRITERS), (REGISTRY_READER, "reader")):
        lines += [
            f"quarkus.security.users.embedded.users.{user}={files.password(registry_secret(user))}",
            f"quarkus.security.users.embedded.roles.{user}={role}",
        ]
    lines += [
        # Apicurio's own check (without OIDC) would ask every caller to log in once any login
        # exists; the path rules below decide instead.
        "apicurio.auth.anonymous-read-access.enabled=true",
        "quarkus.http.auth.permission.health.paths=/health,/health/*",
        "quarkus.http.auth.permission.health.policy=permit",
        # Reading needs a login too: anonymous readers would learn every delivery subject
        # (dlv.<consumer>.<entry>.<grant>...) and its masks, i.e. who receives what.
        "quarkus.http.auth.permission.read.paths=/apis/*",
        "quarkus.http.auth.permission.read.methods=GET,HEAD,OPTIONS",
        "quarkus.http.auth.permission.read.policy=readers",
        "quarkus.http.auth.policy.readers.roles-allowed=reader,platform",
        # Apicurio's admin API (export, configuration) only for the platform, even reads.
        "quarkus.http.auth.permission.admin.paths="
        "/apis/registry/v3/admin/*,/apis/registry/v2/admin/*",
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
