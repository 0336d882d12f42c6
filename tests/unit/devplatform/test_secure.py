import ssl
import stat
from pathlib import Path

from cryptography import x509

from exchange.config.settings import DevPlatformSettings
from exchange.devplatform import secure
from exchange.devplatform.tls import ensure_tls


def test_server_certificate_is_signed_by_the_ca_for_localhost(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    # Python's TLS stack accepts the CA and the server's chain and key.
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    assert context.cert_store_stats()["x509_ca"] == 1
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(files.server_cert), str(files.server_key))
    cert = x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.server_pem.stat().st_mode) == 0o600


def test_certificates_are_kept_while_valid(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path).ca_cert.read_bytes()
    assert ensure_tls(tmp_path).ca_cert.read_bytes() == first
    # Another host name needs a new certificate.
    assert ensure_tls(tmp_path, ("broker.local",)).ca_cert.read_bytes() != first


def test_passwords_are_private_and_stable(tmp_path: Path) -> None:
    files = secure.SecureFiles(tmp_path)
    password = files.password("router")
    assert len(password) >= 24
    assert files.password("router") == password
    assert files.password("operator") != password
    assert stat.S_IMODE(files.password_file("router").stat().st_mode) == 0o600


def test_broker_settings_deny_by_default(tmp_path: Path) -> None:
    files = secure.SecureFiles(tmp_path)
    secure.prepare(files)
    lines = secure.kafka_properties(secure.Endpoints(kafka_port=9092), files)
    props = dict(line.split("=", 1) for line in lines)
    assert props["listeners"].startswith("SASL_SSL://localhost:9092")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "StandardAuthorizer" in props["authorizer.class.name"]
    # The router and the monitor are not super users: they live by ACLs like departments.
    assert "User:router" not in props["super.users"]
    assert "User:monitor" not in props["super.users"]
    # Only the broker's own password ever appears on a command line.
    args = secure.scram_format_args(files)
    assert args.count("--add-scram") == 1 and "name=broker," in args[1]
    assert files.password("operator") not in " ".join(args)


def test_registry_reads_need_a_login_and_writes_the_platform_role(tmp_path: Path) -> None:
    files = secure.SecureFiles(tmp_path)
    secure.prepare(files)
    text = secure.registry_properties(secure.Endpoints.local(DevPlatformSettings()), files)
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert props["quarkus.http.auth.permission.read.policy"] == "readers"
    assert props["quarkus.http.auth.policy.readers.roles-allowed"] == "reader,platform"
    assert props["quarkus.http.auth.permission.write.policy"] == "platform"
    assert props["quarkus.http.insecure-requests"] == "disabled"
    roles = "quarkus.security.users.embedded.roles."
    users = {k.removeprefix(roles): v for k, v in props.items() if k.startswith(roles)}
    assert users == {
        **{w: "platform" for w in secure.REGISTRY_WRITERS},
        "registry-reader": "reader",
    }
