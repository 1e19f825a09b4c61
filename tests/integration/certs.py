"""Test certificates: a small PKI made with ``cryptography`` (no openssl CLI needed).

EC P-256 keys keep generation fast. Every certificate carries its node name as the
subject CN (that is what distproxy binds a peer's identity to by default) and
127.0.0.1 as an IP SAN.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)
CLOCK_SKEW = datetime.timedelta(minutes=5)
# OTP 25 checks the server certificate against the host part of the node name even with
# server_name_indication disabled, as a DNS name: so the SAN carries it as both kinds.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Issued:
    """A certificate and key written as PEM files."""

    cert: Path
    key: Path
    sha256: str  # hex fingerprint of the DER certificate


@dataclass
class Authority:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_ca(directory: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name)).issuer_name(_name(name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = directory / f"{name}.ca.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, key, cert, pem)


def issue(directory: Path, common_name: str, ca: Authority | None, file_stem: str | None = None) -> Issued:
    """A leaf certificate for ``common_name`` signed by ``ca`` (self-signed when None),
    usable as both TLS server and client certificate (OTP nodes use one for both)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject if ca else _name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(LOOPBACK), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    cert = builder.sign(ca.key if ca else key, hashes.SHA256())
    stem = file_stem or common_name.replace("@", "_at_")
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return Issued(cert_path, key_path, cert.fingerprint(hashes.SHA256()).hex())


def erl_string(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_ssl_dist_optfile(path: Path, own: Issued, trusts: Path, verify: bool = True) -> Path:
    """An OTP ``-ssl_dist_optfile``: ``own`` for both roles, ``trusts`` (a CA or a pinned
    self-signed certificate) to verify distproxy on both roles."""
    common = f"{{certfile, {erl_string(own.cert)}}}, {{keyfile, {erl_string(own.key)}}}, " \
             f"{{cacertfile, {erl_string(trusts)}}}"
    peer_verify = "{verify, verify_peer}" if verify else "{verify, verify_none}"
    server = f"{common}, {peer_verify}" + (", {fail_if_no_peer_cert, true}" if verify else "")
    client = f"{common}, {peer_verify}, {{server_name_indication, disable}}"
    path.write_text(f"[{{server, [{server}]}},\n {{client, [{client}]}}].\n")
    return path


def tls_dist_args(optfile: Path) -> list[str]:
    return ["-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]
