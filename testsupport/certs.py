"""Certificate factories for tests (built on the lab's, which the demo uses too)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sst import demo
from testsupport import lab

Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def write(tmp: Path, name: str, *certs: x509.Certificate) -> str:
    """Write certificates into one PEM file; returns its path."""
    p = tmp / name
    p.write_bytes(b"".join(lab.pem_cert(c) for c in certs))
    return str(p)


def write_key(
    tmp: Path, name: str, key: ec.EllipticCurvePrivateKey, password: bytes | None = None
) -> str:
    """Write a key, optionally encrypted."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    p = tmp / name
    p.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    )
    os.chmod(p, 0o600)
    return str(p)


def intermediate(ca: Pair, cn: str = "intermediate") -> Pair:
    """An intermediate CA signed by ca."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(demo.subject_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca[1], hashes.SHA256())
    )
    return cert, key


def v1_leaf(ca: Pair, cn: str) -> Pair:
    """A version-1 style certificate with no extensions, as `openssl x509 -req` makes."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(demo.subject_name(cn))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .sign(ca[1], hashes.SHA256())
    )
    return cert, key
