"""Certificate authorities made at run time and the server certificates they sign (HTTPS JWKS endpoints).

Shared by the local mesh (files on disk) and the kind/cluster targets (PEM in a Secret).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def make_ca(common_name: str = "mesh-jwt-conformance CA", days: int = 1) -> tuple[str, str]:
    """A fresh CA: (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def server_cert(ca_cert_pem: str, ca_key_pem: str, hosts: list[str], days: int = 1) -> tuple[str, str]:
    """A serving certificate for ``hosts`` signed by the CA: (cert PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), _key_pem(key)


def certificate_chain(public_key: object, common_name: str, days: int = 1) -> str:
    """An X.509 chain in PEM (RFC 7515 §4.1.5, ``x5u``): a signing certificate for ``public_key`` (the subject
    ``common_name``), then the fresh CA that signed it."""
    ca_pem, ca_key_pem = make_ca(f"{common_name} CA", days)
    ca_cert = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode() + ca_pem


@dataclass(frozen=True)
class ServerCertFiles:
    """PEM files on disk: the CA certificate, and a server certificate + key."""

    ca_cert: Path
    cert: Path
    key: Path


def write_ca_and_server_cert(directory: Path, hosts: list[str]) -> ServerCertFiles:
    """Write a fresh CA certificate and a server certificate + key (0600) for ``hosts`` into ``directory``."""
    ca_cert, ca_key = make_ca()
    cert, key = server_cert(ca_cert, ca_key, hosts)
    directory.mkdir(parents=True, exist_ok=True)
    files = ServerCertFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca_cert.write_text(ca_cert)
    files.cert.write_text(cert)
    files.key.touch(mode=0o600)
    files.key.write_text(key)
    return files
