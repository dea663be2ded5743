"""Certificate pre-flight checks with `cryptography`, before any port opens.

The checks follow what OpenSSL (inside stunnel and socat) decides, so certificates that
work with the stock scripts keep working: chains are built by issuer name and signature
(v1 and CN-only certificates are accepted, as OpenSSL accepts them), intermediates may be
bundled after the leaf. Identity is not judged here at all: OpenSSL itself gives the
verdict (`openssl x509 -checkhost/-checkip`, the calls stunnel makes), and
`sst.net.is_ip_literal` is the one rule that picks the check, here and in the tunnels'
configuration (docs/tls.md, "Identity").
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from sst import tools
from sst.config import TLSFiles
from sst.errors import TLSError
from sst.net import is_ip_literal
from sst.process.runner import run_capture
from sst.tools import openssl as ossl


@dataclass(frozen=True)
class CheckedTLS:
    """The result of a successful check: the leaf, its CN and when it expires."""

    files: TLSFiles
    cn: str
    not_after: datetime.datetime
    leaf: x509.Certificate

    def require_identity(self, name: str, why: str) -> None:
        """Given a name a peer will check and why; raises TLSError unless OpenSSL accepts
        this certificate for it (the rule of `identity_matches`)."""
        if not identity_matches(self.files.cert, name):
            rule = (
                "an address matches IP SANs only"
                if is_ip_literal(name)
                else "a name matches DNS SANs, the CN only without them"
            )
            raise TLSError(
                f"certificate '{self.files.cert}' does not match '{name}' ({why}; {rule}): "
                f"{describe_names(self.leaf)}"
            )


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TLSError(f"{what} '{path}': file not found") from None
    except PermissionError:
        raise TLSError(f"{what} '{path}': not readable by uid {os.geteuid()}") from None
    except IsADirectoryError:
        raise TLSError(f"{what} '{path}': is a directory, expected a PEM file") from None


def load_certs(path: str, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order (leaf first for a chain file)."""
    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        raise TLSError(f"{what} '{path}': no PEM certificate in the file")
    return certs


def load_capath(path: str) -> list[x509.Certificate]:
    """All certificates in a CA directory (hashed links or .pem/.crt files)."""
    out: list[x509.Certificate] = []
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise TLSError(f"CA path '{path}': {exc.strerror}") from None
    for name in names:
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        try:
            with open(full, "rb") as f:
                out.extend(x509.load_pem_x509_certificates(f.read()))
        except (OSError, ValueError):
            continue
    if not out:
        raise TLSError(f"CA path '{path}': no PEM certificates in the directory")
    return out


def load_key(path: str) -> PrivateKeyTypes:
    """An unencrypted PEM private key (stunnel and socat cannot ask for a passphrase)."""
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSError(
            f"key '{path}': the key is encrypted; the SST tunnel cannot ask for "
            "its passphrase, decrypt it with 'openssl pkey'"
        ) from None
    except ValueError:
        raise TLSError(f"key '{path}': not a PEM private key") from None


def _pub(obj: x509.Certificate | PrivateKeyTypes) -> bytes:
    key = obj.public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def common_name(cert: x509.Certificate) -> str:
    """The subject's (last) CN, or ''."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[-1].value) if attrs else ""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _check_dates(cert: x509.Certificate, path: str, what: str) -> None:
    now = _now()
    subject = common_name(cert) or cert.subject.rfc4514_string()
    if now < cert.not_valid_before_utc:
        raise TLSError(
            f"{what} '{path}': '{subject}' is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise TLSError(
            f"{what} '{path}': '{subject}' expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        # OpenSSL accepts a self-signed v1 certificate as a trust anchor.
        return cert.version == x509.Version.v1 or cert.issuer == cert.subject
    return bool(bc.ca)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature and friends
        return False
    return True


def verify_chain(
    chain: list[x509.Certificate], anchors: list[x509.Certificate], cert_path: str, ca_label: str
) -> None:
    """Leaf (chain[0]) must lead, through bundled intermediates, to one of the anchors."""
    current = chain[0]
    pool = chain[1:]
    for _ in range(10):
        for anchor in anchors:
            if _signed_by(current, anchor) or current.public_bytes(
                serialization.Encoding.DER
            ) == anchor.public_bytes(serialization.Encoding.DER):
                if not _is_ca(anchor) and anchor is not current:
                    raise TLSError(
                        f"CA {ca_label}: '{common_name(anchor)}' is not a CA "
                        "certificate (basicConstraints CA:FALSE)"
                    )
                _check_dates(anchor, ca_label, "CA")
                return
        nxt = next((c for c in pool if _signed_by(current, c)), None)
        if nxt is None:
            break
        _check_dates(nxt, cert_path, "intermediate certificate in")
        pool.remove(nxt)
        current = nxt
    leaf = common_name(chain[0]) or chain[0].subject.rfc4514_string()
    issuer = current.issuer.rfc4514_string()
    raise TLSError(
        f"certificate '{cert_path}': '{leaf}' does not chain to the CA {ca_label} "
        f"(no trusted issuer for '{issuer}'; bundle intermediates after the leaf)"
    )


def identity_matches(cert_path: str, name: str) -> bool:
    """Given a PEM certificate file (leaf first) and a name; returns OpenSSL's own verdict
    on whether the certificate is for that name; raises ToolMissing without the openssl
    program, TLSError when openssl cannot read the certificate."""
    binary = tools.find("openssl")
    res = run_capture(
        ossl.identity_argv(binary, cert_path, name, ip=is_ip_literal(name)), timeout=30
    )
    verdict = ossl.identity_matches(res.stdout, name)
    if verdict is None:
        raise TLSError(
            f"certificate '{cert_path}': openssl could not check it against '{name}': "
            f"{(res.stderr.strip() or res.stdout.strip())[-200:]}"
        )
    return verdict


def describe_names(cert: x509.Certificate) -> str:
    """`CN=..., SAN DNS:a, IP:b` for error messages."""
    parts = [f"CN={common_name(cert) or '-'}"]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        parts += [f"DNS:{d}" for d in san.get_values_for_type(x509.DNSName)]
        parts += [f"IP:{i}" for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        parts.append("no SAN")
    return ", ".join(parts)


def check(files: TLSFiles, *, role: str, need_ca: bool) -> CheckedTLS:
    """Check cert, key and CA for one role; raises TLSError naming the file and reason."""
    if not files.cert:
        raise TLSError(f"no certificate configured for the {role} (ssl-cert / tcert)")
    if not files.key:
        raise TLSError(f"no key configured for the {role} (ssl-key / tkey)")
    chain = load_certs(files.cert)
    key = load_key(files.key)
    if _pub(chain[0]) != _pub(key):
        own = next((c for c in chain[1:] if _pub(c) == _pub(key)), None)
        if own is not None:
            raise TLSError(
                f"certificate '{files.cert}' and key '{files.key}' do not match: the file "
                f"starts with '{common_name(chain[0])}'; the key's certificate "
                f"'{common_name(own)}' must come first, then the intermediates"
            )
        raise TLSError(f"certificate '{files.cert}' and key '{files.key}' do not match")
    _check_dates(chain[0], files.cert, "certificate")
    if files.ca or files.capath:
        anchors = load_certs(files.ca, "CA") if files.ca else load_capath(files.capath)
        verify_chain(chain, anchors, files.cert, f"'{files.ca or files.capath}'")
    elif need_ca:
        raise TLSError(f"no CA configured for the {role} (ssl-ca / ssl-capath / tca)")
    return CheckedTLS(files, common_name(chain[0]), chain[0].not_valid_after_utc, chain[0])
