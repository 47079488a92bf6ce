"""The cluster's certificates (``start --head --tls``): a CA made for the session, and the keys
and CA-signed certificates of its members, in PEM, with the ``cryptography`` package.

A TLS directory holds ``ca.pem``, ``cert.pem`` and ``key.pem`` (transports/tls.py reads them);
the head's also holds ``ca.key``, with which the GCS signs the requests of joining members
(enrollment.py). Keys are ECDSA P-256: fast to make, so every driver gets a key of its own.
"""

from __future__ import annotations

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from transports.tls import CA_FILE, CERT_FILE, KEY_FILE

CA_KEY_FILE = "ca.key"
TLS_DIR = "tls"  # under a session directory
CA_DAYS = 3650
MEMBER_DAYS = 365


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "actorflow cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("TLS: expected an EC private key")
    return key


def new_ca(common_name: str = "actorflow cluster CA") -> tuple[bytes, bytes]:
    """(key PEM, self-signed CA certificate PEM) for a new cluster."""
    key_pem = new_key()
    key = _load_key(key_pem)
    name = _name(f"{common_name} {os.urandom(4).hex()}")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def new_csr(key_pem: bytes, common_name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .sign(_load_key(key_pem), hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(
    ca_key_pem: bytes,
    ca_cert_pem: bytes,
    csr_pem: bytes,
    *,
    days: float = MEMBER_DAYS,
    not_before: datetime.datetime | None = None,
) -> bytes:
    """A member certificate (client and server use) for the key in csr_pem."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("TLS: the certificate request's signature is not valid")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = _load_key(ca_key_pem)
    start = not_before or (_now() - datetime.timedelta(minutes=5))
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value)[:64] if names else "member"
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def check_member(key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
    """Raise ValueError unless cert_pem is for key_pem and signed by ca_pem's key."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    if cert.public_key() != _load_key(key_pem).public_key():
        raise ValueError("TLS: the certificate issued is not for our key")
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as exc:
        raise ValueError(
            f"TLS: the certificate issued is not signed by the CA sent: {exc}"
        ) from None


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_member(directory: str, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> str:
    """Write a member's TLS directory (mode 0700, files 0600); its path."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    _write(os.path.join(directory, KEY_FILE), key_pem)
    _write(os.path.join(directory, CERT_FILE), cert_pem)
    _write(os.path.join(directory, CA_FILE), ca_pem)
    return directory


def create_head_dir(directory: str) -> str:
    """A new cluster CA and the head's own certificate (GCS and head node) in directory;
    kept as it is when it already holds them (a resumed session)."""
    if os.path.isfile(os.path.join(directory, CA_KEY_FILE)):
        return directory
    ca_key, ca_cert = new_ca()
    key = new_key()
    cert = sign_csr(ca_key, ca_cert, new_csr(key, "head"))
    write_member(directory, key, cert, ca_cert)
    _write(os.path.join(directory, CA_KEY_FILE), ca_key)
    return directory


def read_ca(directory: str) -> tuple[bytes, bytes]:
    """(CA key PEM, CA certificate PEM) of a head's TLS directory."""
    with open(os.path.join(directory, CA_KEY_FILE), "rb") as f:
        key = f.read()
    with open(os.path.join(directory, CA_FILE), "rb") as f:
        return key, f.read()
