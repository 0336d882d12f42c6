"""The local platform's own certificate authority and the server certificate it signs.

Clients verify the broker and the registry against ``ca.pem``: a process that takes over the
port cannot pose as the broker without a certificate signed by the CA, whose key is not kept
once the server certificate is signed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.files import write_private

#: The local platform is recreated often; a year is long enough and still expires.
VALID_DAYS = 365


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    #: The server's private key (PKCS#8) followed by its certificate and the CA: the form
    #: Kafka's PEM key store reads.
    server_pem: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def under(cls, folder: Path) -> TlsFiles:
        return cls(
            folder / "ca.pem", folder / "server.pem", folder / "server.crt", folder / "server.key"
        )

    def exist(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.server_pem, self.server_cert))


def ensure_tls(folder: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """Create the CA and a server certificate for ``hosts`` unless they exist and are valid."""
    files = TlsFiles.under(folder)
    if files.exist() and _valid_for(files.server_cert, hosts):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Exchange local platform CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(pem)
    ca_pem = ca_cert.public_bytes(pem)
    write_private(files.server_key, key_pem)
    write_private(files.server_pem, key_pem + cert_pem + ca_pem)
    files.server_cert.write_bytes(cert_pem + ca_pem)
    files.ca_cert.write_bytes(ca_pem)
    # The CA's key is not kept: the platform re-creates both when the server needs a new
    # certificate, so nothing can sign a second server certificate later.
    return files


def _valid_for(cert_file: Path, hosts: tuple[str, ...]) -> bool:
    cert = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=7):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return set(hosts) <= present
