"""Certificate faults on real nodes, both roles, both tunnels (stunnel for rsync, socat for
mariabackup): each is refused before any data moves, by the side that can know it, with the
file and the reason in its one ERROR line; the joiner keeps its datadir, nothing is left
running, and the donor stays Synced."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization

from sst import datadir, demo, status
from testsupport import certs as tc
from testsupport import lab as labmod
from testsupport.cluster import failed_join, join, leftovers
from testsupport.lab import Lab, Node


@dataclass
class PKI:
    """A CA of the module's own (its key signs the odd certificates) and where files go."""

    ca: tc.Pair
    ca_path: str
    directory: str
    count: int = 0

    def write(
        self,
        role: str,
        pair: tuple[object, object],
        *,
        extra: tuple[object, ...] = (),
        key_password: bytes | None = None,
    ) -> tuple[str, str]:
        """Write a certificate (followed by extra certificates) and its key, mysql-readable."""
        self.count += 1
        cert, key = pair
        c = os.path.join(self.directory, f"{self.count}-{role}-cert.pem")
        k = os.path.join(self.directory, f"{self.count}-{role}-key.pem")
        demo.write_file(c, b"".join(labmod.pem_cert(x) for x in (cert, *extra)))  # type: ignore[arg-type]
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(key_password)
            if key_password
            else serialization.NoEncryption()
        )
        demo.write_file(
            k,
            key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc
            ),
            0o600,
        )
        labmod.chown(k, "mysql")
        return c, k

    def good(self, node: Node) -> tuple[str, str]:
        return self.write(
            node.name, labmod.make_leaf(self.ca, node.name, ips=[node.ip], dns=[node.name])
        )


@pytest.fixture(scope="module")
def pki(lab: Lab) -> PKI:
    d = os.path.join(lab.base, "pki")
    os.makedirs(d)
    ca = labmod.make_ca("certificate tests CA")
    path = os.path.join(d, "ca.pem")
    demo.write_file(path, labmod.pem_cert(ca[0]))
    return PKI(ca, path, d)


def opts(pki: PKI, mode: str, cert_key: tuple[str, str], ca: str = "") -> dict[str, str]:
    cert, key = cert_key
    return {"ssl-mode": mode, "ssl-ca": ca or pki.ca_path, "ssl-cert": cert, "ssl-key": key}


# Each case: (the side that is misconfigured and must say so, how its files are made,
# the words its ERROR line must hold, the ssl-mode). The builder returns (cert, key, ca).
Builder = Callable[[PKI, Node], tuple[str, str, str]]


def wrong_ca(pki: PKI, node: Node) -> tuple[str, str, str]:
    other = labmod.make_ca("some other CA")
    return (*pki.write(node.name, labmod.make_leaf(other, node.name, ips=[node.ip])), "")


def expired(pki: PKI, node: Node) -> tuple[str, str, str]:
    leaf = labmod.make_leaf(pki.ca, node.name, ips=[node.ip], not_before_days=-30, days=-1)
    return (*pki.write(node.name, leaf), "")


def not_yet_valid(pki: PKI, node: Node) -> tuple[str, str, str]:
    leaf = labmod.make_leaf(pki.ca, node.name, ips=[node.ip], not_before_days=2, days=30)
    return (*pki.write(node.name, leaf), "")


def key_mismatch(pki: PKI, node: Node) -> tuple[str, str, str]:
    cert, _ = pki.good(node)
    _, other_key = pki.good(node)
    return cert, other_key, ""


def encrypted_key(pki: PKI, node: Node) -> tuple[str, str, str]:
    leaf = labmod.make_leaf(pki.ca, node.name, ips=[node.ip])
    return (*pki.write(node.name, leaf, key_password=b"secret passphrase"), "")


def unreadable_key(pki: PKI, node: Node) -> tuple[str, str, str]:
    cert, key = pki.good(node)
    os.chown(key, 0, 0)  # 0600 root: the SST runs as mysql
    return cert, key, ""


def chain_in_order(pki: PKI, node: Node) -> tuple[str, str, str]:
    inter = tc.intermediate(pki.ca)
    leaf = labmod.make_leaf(inter, node.name, ips=[node.ip], dns=[node.name])
    return (*pki.write(node.name, leaf, extra=(inter[0],)), "")


def chain_wrong_order(pki: PKI, node: Node) -> tuple[str, str, str]:
    inter = tc.intermediate(pki.ca)
    leaf = labmod.make_leaf(inter, node.name, ips=[node.ip])
    c, k = pki.write(node.name, leaf)
    with open(c, "rb") as f:
        leaf_pem = f.read()
    with open(c, "wb") as f:  # the intermediate first: the file's first certificate is not ours
        f.write(labmod.pem_cert(inter[0]) + leaf_pem)
    return c, k, ""


def names_another_host(pki: PKI, node: Node) -> tuple[str, str, str]:
    """CN is the node's name, but the DNS SAN names another host. With a DNS SAN present the
    CN does not count (RFC 6125), so the name the joiner announces to the donor for
    VERIFY_IDENTITY is not in its certificate: the joiner knows before it listens. (An
    IP-only SAN leaves the CN in force, as in OpenSSL's X509_check_host.)"""
    leaf = labmod.make_leaf(pki.ca, node.name, dns=["elsewhere.example"])
    return (*pki.write(node.name, leaf), "")


CASES: dict[str, tuple[str, Builder, str, str]] = {
    "wrong-CA": ("joiner", wrong_ca, "does not chain to the CA", "VERIFY_CA"),
    "expired": ("donor", expired, "expired on", "VERIFY_CA"),
    "not-yet-valid": ("joiner", not_yet_valid, "is not valid before", "VERIFY_CA"),
    "key-mismatch": ("donor", key_mismatch, "do not match", "VERIFY_CA"),
    "encrypted-key": ("joiner", encrypted_key, "the key is encrypted", "REQUIRED"),
    "unreadable-key": ("donor", unreadable_key, "not readable by uid", "VERIFY_CA"),
    "chain-wrong-order": ("joiner", chain_wrong_order, "must come first", "VERIFY_CA"),
    "no-matching-name": ("joiner", names_another_host, "does not match", "VERIFY_IDENTITY"),
}
OURS = {"rsync": "py_rsync", "mariabackup": "py_mariabackup"}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["rsync", "mariabackup"])
def test_refused_before_data_moves(lab: Lab, donor: Node, pki: PKI, method: str, case: str) -> None:
    side, build, words, mode = CASES[case]
    joiner = lab.add_node(sst_method=OURS[method])
    bad = joiner if side == "joiner" else donor
    cert, key, ca = build(pki, bad)
    for node in (donor, joiner):
        node.sst_options = (
            opts(pki, mode, (cert, key), ca) if node is bad else opts(pki, mode, pki.good(node))
        )
    log_at = len(donor.log_text())
    try:
        failed_join(lab, joiner)  # the joiner aborts, its datadir unchanged, nothing left
        texts = {"joiner": joiner.log_text(), "donor": donor.log_text()[log_at:]}
        errors = [ln for ln in texts[side].splitlines() if "WSREP_SST: [ERROR]" in ln]
        assert len(errors) == 1, errors
        assert words in errors[0], errors[0]
        assert cert in errors[0] or key in errors[0], errors[0]
        assert ": 22 (Invalid argument)" in texts[side]
        donor.wait_synced(60)
    finally:
        donor.sst_options = {}


def test_certificate_chain_with_intermediate_joins(lab: Lab, donor: Node, pki: PKI) -> None:
    """The right order (leaf, then intermediate) works through both tunnels."""
    for method in ("rsync", "mariabackup"):
        joiner = lab.add_node(sst_method=OURS[method])
        cert, key, _ = chain_in_order(pki, joiner)
        joiner.sst_options = opts(pki, "VERIFY_IDENTITY", (cert, key))
        donor.sst_options = opts(pki, "VERIFY_IDENTITY", pki.good(donor))
        try:
            join(lab, donor, joiner)
        finally:
            donor.sst_options = {}
            lab.remove_node(joiner)


@pytest.mark.parametrize("san", ["ip-only", "dns-only"])
@pytest.mark.parametrize("method", ["rsync", "mariabackup"])
def test_ip_or_dns_san_joins_under_verify_identity(
    lab: Lab, donor: Node, pki: PKI, method: str, san: str
) -> None:
    """Local nodes dial each other by IP (127.0.0.N) and the joiner announces its name with
    the address: a certificate whose only SAN is the node's IP address (its CN the name), or
    only its DNS name, satisfies VERIFY_IDENTITY through both tunnels. (The container tier
    does the same with nodes that know each other by host name only.)"""
    joiner = lab.add_node(sst_method=OURS[method])

    def leaf(node: Node) -> tuple[str, str]:
        ips, dns = ([node.ip], []) if san == "ip-only" else ([], [node.name])
        return pki.write(node.name, labmod.make_leaf(pki.ca, node.name, ips=ips, dns=dns))

    joiner.sst_options = opts(pki, "VERIFY_IDENTITY", leaf(joiner))
    donor.sst_options = opts(pki, "VERIFY_IDENTITY", leaf(donor))
    try:
        join(lab, donor, joiner)
        assert "VERIFY_IDENTITY" in joiner.log_text()
    finally:
        donor.sst_options = {}


def test_ip_in_cn_joins_under_verify_identity(lab: Lab, donor: Node, pki: PKI) -> None:
    """A common layout: the node's address as CN, and SANs DNS:<name>, IP:<address>. The
    joiner announces its CN, an IP literal, which the donor's stunnel checks with checkIP
    against the IP SAN (on main it went to checkHost, which ignores the CN next to a DNS
    SAN and never reads IP SANs: the donor failed with rsync's 'code 5')."""
    joiner = lab.add_node(sst_method="py_rsync")

    def leaf(node: Node) -> tuple[str, str]:
        cert = labmod.make_leaf(pki.ca, node.ip, ips=[node.ip], dns=[node.name])
        return pki.write(node.name, cert)

    joiner.sst_options = opts(pki, "VERIFY_IDENTITY", leaf(joiner))
    donor.sst_options = opts(pki, "VERIFY_IDENTITY", leaf(donor))
    log_at = len(donor.log_text())
    try:
        join(lab, donor, joiner)
        assert "TLS VERIFY_IDENTITY through stunnel" in joiner.log_text()
        assert "[ERROR]" not in donor.log_text()[log_at:]
    finally:
        donor.sst_options = {}


def rogue_handshake(address: str, ca: str) -> str:
    """A TLS client with no certificate of its own (`openssl s_client`) dials address and
    offers a few bytes; returns what it printed."""
    res = subprocess.run(
        ["openssl", "s_client", "-connect", address, "-CAfile", ca, "-quiet"],
        input="not an SST\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.stdout + res.stderr


@pytest.mark.parametrize("method", ["rsync", "mariabackup"])
def test_peer_without_client_certificate_is_refused(
    lab: Lab, donor: Node, pki: PKI, method: str
) -> None:
    """Under VERIFY_CA a joiner's tunnel demands the donor's certificate: a peer with none is
    refused in the handshake, before a byte reaches rsync or mbstream. Both joiners refuse
    that connection and keep listening (stunnel; for mariabackup a new socat, since it is
    py_mariabackup, docs/tls.md), so the real donor still joins."""
    target = os.path.join(lab.base, f"no-client-cert-{method}")
    cnf = os.path.join(lab.base, f"no-client-cert-{method}.cnf")
    node9 = pki.write("node9", labmod.make_leaf(pki.ca, "node9", ips=["127.0.0.9"]))
    with open(cnf, "w", encoding="utf-8") as f:
        f.write("[sst]\n" + "".join(f"{k}={v}\n" for k, v in opts(pki, "VERIFY_CA", node9).items()))
    port = labmod.free_port_block("127.0.0.9", 1)
    joiner = subprocess.Popen(
        [
            *("galera-sst", "joiner", "--method", OURS[method]),
            *("--address", f"127.0.0.9:{port}", "--datadir", target, "--defaults-file", cnf),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert joiner.stdout is not None and joiner.stderr is not None
        assert joiner.stdout.readline().startswith("ready: on the donor, run")
        address = joiner.stdout.readline().split("--address '")[1].split("'")[0]
        said = rogue_handshake(f"127.0.0.9:{port}", pki.ca_path)
        assert "alert certificate required" in said, said
        bookkeeping = (*datadir.TRANSIENT, datadir.SST_PID, "stunnel.pid", status.FILE)
        received = [n for n in os.listdir(target) if n not in bookkeeping]
        assert received == [], received
        assert joiner.poll() is None, "the joiner gave up on a stray connection"
        donor.sst_options = opts(pki, "VERIFY_CA", pki.good(donor))
        donor.write_cnf(lab.nodes)
        d = subprocess.run(
            [
                *("galera-sst", "donor", "--method", OURS[method], "--address", address),
                *("--datadir", donor.datadir, "--socket", donor.socket),
                *("--defaults-file", donor.cnf),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert d.returncode == 0, d.stdout + d.stderr
        assert joiner.wait(60) == 0
        if method == "mariabackup":
            said = joiner.stderr.read()
            assert "Refused a connection on the SST port" in said, said
            assert "peer did not return a certificate" in said, said
        assert leftovers(target) == []
    finally:
        if joiner.poll() is None:
            joiner.kill()
            joiner.wait()
        donor.sst_options = {}
        donor.write_cnf(lab.nodes)
        shutil.rmtree(target, ignore_errors=True)
