"""``exchange deploy``: what a secure deployment (``docker-compose.yml``) needs before it starts.

The same files and steps as the secure local platform (``exchange dev up --secure``), for
servers reached by name on a network: ``secure-files`` writes certificates, passwords, keys,
the broker's and the registry's settings and one environment file per platform principal;
``principals`` creates the platform's SCRAM principals once the broker runs.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from exchange.audit.signing import Signer
from exchange.cli import output
from exchange.devplatform import secure
from exchange.devplatform.platform import kafka_uuid
from exchange.files import write_private
from exchange.kafka.admin import Admin

app = typer.Typer(
    help="Prepare a secure deployment (docker-compose.yml runs these).", no_args_is_help=True
)
Secrets = Annotated[
    Path, typer.Option("--secrets", help="Where the deployment's secrets live (a volume).")
]
#: Where the broker keeps its data in the apache/kafka image.
KAFKA_DATA = "/var/lib/kafka/data"


def endpoints(kafka_host: str, registry_host: str, registry_port: int) -> secure.Endpoints:
    # In a container the broker listens on every interface; clients use the service names.
    return secure.Endpoints(
        kafka_host=kafka_host,
        registry_host=registry_host,
        registry_port=registry_port,
        listen_host="0.0.0.0",
    )


@app.command("secure-files")
def secure_files(
    secrets: Secrets = Path("/secrets"),
    kafka_host: Annotated[str, typer.Option(help="The broker's name on the network.")] = "kafka",
    registry_host: Annotated[str, typer.Option(help="The registry's name.")] = "registry",
    registry_port: Annotated[int, typer.Option(help="The registry's HTTPS port.")] = 8443,
) -> None:
    """Write (or keep) everything the secure deployment's servers and clients read. Safe to
    run at every start: passwords, keys and a valid certificate are kept."""
    files = secure.SecureFiles(secrets)
    ep = endpoints(kafka_host, registry_host, registry_port)
    secure.prepare(files, ep)
    secure.env_files(files, ep)
    kafka = secrets / "kafka"
    listeners = secure.kafka_properties(ep, files)
    write_private(
        kafka / "server.properties",
        secure.server_properties(ep, listeners, KAFKA_DATA).encode(),
    )
    cluster = kafka / "cluster-id"
    if not cluster.exists():
        write_private(cluster, kafka_uuid(str(uuid.uuid4())).encode(), replace=False)
    # format needs the broker's own password, which server.properties already holds.
    write_private(kafka / "broker.password", files.password_file("broker").read_bytes())
    registry = secrets / "registry" / "application.properties"
    write_private(registry, secure.registry_properties(ep, files).encode())
    # One folder per platform client, each mounted alone into its containers; the writers'
    # public keys for the operator to register; the folder department credentials go to
    # (volume subpaths must exist before they are mounted).
    for principal in ("operator", "router", "monitor", "portal", "quality"):
        secure.write_bundle(files, ep, principal, secrets / "principals" / principal)
    for principal in secure.AUDIT_WRITERS:
        public = Signer.load(files.signing_key_file(principal)).public_raw.hex()
        write_private(secrets / "public" / f"{principal}.audit-key", public.encode())
    (secrets / "departments").mkdir(mode=0o700, exist_ok=True)
    output.table(
        f"secure deployment files in {secrets}",
        ["what", "where"],
        [
            ("certificates (CA, server for " + ", ".join(ep.certificate_hosts) + ")", "tls/"),
            ("passwords of the platform's principals (0600)", "credentials/"),
            ("audit signing keys, the router's salt secret (0600)", "keys/"),
            ("one environment file per principal", "env/"),
            ("each platform client's own files, mounted alone", "principals/<name>/"),
            ("the audit writers' public keys", "public/"),
            ("departments' credentials (`dept credentials --out`)", "departments/"),
            ("the broker's settings and cluster id", "kafka/"),
            ("the registry's settings", "registry/application.properties"),
        ],
    )


@app.command()
def principals(
    secrets: Secrets = Path("/secrets"),
    bootstrap: Annotated[str, typer.Option(help="The broker.")] = "kafka:9092",
) -> None:
    """Create the platform's SCRAM principals (operator, router, monitor, registry) with the
    passwords in the secrets folder, as ``broker``; idempotent."""
    files = secure.SecureFiles(secrets)
    secure.create_principals(Admin(secure.broker_settings(bootstrap, files)), files)
    output.out.print(f"principals {', '.join(secure.SCRAM_PRINCIPALS[1:])} on {bootstrap}")
