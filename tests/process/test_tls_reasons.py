"""A TLS failure says why (docs/tls.md, "When TLS fails"): the rsync donor's one ERROR line
carries stunnel's verdict instead of rsync's "code 5", and the joiner names the donor it
refused. Real scripts, real stunnel and rsync; the joiner's side is a stunnel server built
by the product's own configuration functions, holding the certificate under test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from sst import net
from sst.config import TLSFiles
from sst.errors import ConfigError
from sst.methods import rsync as rsm
from sst.process.runner import Stage, Supervisor
from sst.status import FILE as STATUS_FILE
from sst.tools import openssl as oss
from sst.tools import rsync as rs
from sst.tools import stunnel as st
from testsupport import lab
from testsupport.process import (
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    no_processes_left,
    start_script,
    write_cnf,
)


@dataclass(frozen=True)
class Files:
    """A CA file and a certificate with its key."""

    ca: str
    cert: str
    key: str


class PKI:
    """Two unrelated CAs ('ours' and 'other') and a writer of certificates."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.ours = lab.make_ca("reasons CA")
        self.other = lab.make_ca("some other CA")
        self.count = 0

    def ca_file(self, *cas: x509.Certificate) -> str:
        self.count += 1
        p = self.d / f"ca{self.count}.pem"
        p.write_bytes(b"".join(lab.pem_cert(c) for c in cas))
        return str(p)

    def leaf(self, ca_file: str, signer: str = "ours", **kw: object) -> Files:
        self.count += 1
        ca = self.ours if signer == "ours" else self.other
        cn = str(kw.pop("cn", "joiner"))
        cert, key = lab.make_leaf(ca, cn, **kw)  # type: ignore[arg-type]
        c, k = self.d / f"{self.count}-cert.pem", self.d / f"{self.count}-key.pem"
        c.write_bytes(lab.pem_cert(cert))
        k.write_bytes(lab.pem_key(key))
        os.chmod(k, 0o600)
        return Files(ca_file, str(c), str(k))


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    d = tmp_path / "pki"
    d.mkdir()
    return PKI(d)


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    with Supervisor() as s:
        yield s


def stunnel_joiner(sup: Supervisor, tmp: Path, files: Files) -> int:
    """A joiner's stunnel + rsync daemon (the product's configuration) on 127.0.0.1."""
    port = free_port()
    dest = tmp / "dest"
    dest.mkdir()
    rconf = tmp / "rsyncd.conf"
    modules = [(rs.DEFAULT_MODULE, str(dest))]
    rconf.write_text(
        rs.daemon_conf(
            rs.Daemon(
                pid_file=str(tmp / "rsyncd.pid"),
                modules=modules,
                timeout=30,
                owner=(0, 0) if os.geteuid() == 0 else None,
            )
        )
    )
    sconf = tmp / "server.conf"
    sconf.write_text(
        st.server_conf(
            TLSFiles(ca=files.ca, cert=files.cert, key=files.key),
            st.Verify(chain=True),
            pid_file=str(tmp / "stunnel.pid"),
            accept=f"127.0.0.1:{port}",
            rsync="/usr/bin/rsync",
            execargs=rs.server_execargs(rconf.name),
        )
    )
    server = sup.start(
        Stage(st.argv(rsm.find_stunnel(), str(sconf)), name="stunnel", cwd=str(rconf.parent))
    )
    sup.wait_until(
        lambda: net.tree_listens(server.pid, port), what="listening", timeout=10, alive=[server]
    )
    return port


def donor_fails(node_dir: Path, port: int, donor: Files, mode: str) -> str:
    """Run the real donor against the port; returns its one ERROR line."""
    write_cnf(
        node_dir,
        {"ssl-mode": mode, "ssl-ca": donor.ca, "ssl-cert": donor.cert, "ssl-key": donor.key},
    )
    d = start_script(
        "py_rsync",
        donor_args(node_dir, f"127.0.0.1:{port}/{rs.DEFAULT_MODULE}"),
        env={"WSREP_SST_OPT_REMOTE_AUTH": "joiner:0123456789abcdef"},
    )
    kids: set[int] = set()
    while d.proc.poll() is None:  # the tunnel and rsync it starts, until it gives up
        # No pause between looks: the donor gives up within milliseconds of the refusal
        # (each walk of its tree takes about one).
        kids.update(p.pid for p in d.descendants())
    assert kids
    # The handshake fails in the pre-copy: the server is never asked to lock.
    assert d.readline() == ""
    assert d.wait() != 0
    assert no_processes_left(sorted(kids))
    err = d.stderr()
    errors = error_lines(err)
    assert len(errors) == 1, errors
    assert "code 5" not in errors[0]
    return errors[0]


REFUSED = "the peer certificate was refused: "
CASES = {
    "hostname": (REFUSED + "hostname mismatch (checked 'joiner') (CN=joiner)",),
    "unknown-ca": (
        REFUSED
        + "unknown CA (self-signed certificate in certificate chain) (CN=some other CA at depth 1)",
    ),
    "expired": (REFUSED + "certificate has expired (CN=joiner)",),
    # TLS 1.3: the joiner's refusal reaches the donor as an alert or, when the donor's
    # stunnel has already finished its side of the handshake, as a bare close.
    "donor-refused": (
        "the peer refused this side's certificate or handshake: alert unknown ca",
        "the peer closed the connection before the rsync greeting (it may have refused "
        "this side's certificate: its log says why)",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_donor_error_line_says_why(
    case: str, pki: PKI, sup: Supervisor, node_dir: Path, tmp_path: Path
) -> None:
    ours = pki.ca_file(pki.ours[0])
    donor = pki.leaf(ours, cn="donor", ips=["127.0.0.1"])
    joiner = {
        # a valid certificate for another name: the CN is ignored next to a DNS SAN
        "hostname": pki.leaf(ours, dns=["other.lab.test"]),
        "unknown-ca": pki.leaf(pki.ca_file(pki.other[0], pki.ours[0]), signer="other"),
        "expired": pki.leaf(ours, dns=["joiner"], not_before_days=-30, days=-1),
        # the joiner trusts only another CA, so it refuses the donor's certificate
        "donor-refused": pki.leaf(pki.ca_file(pki.other[0]), dns=["joiner"]),
    }[case]
    port = stunnel_joiner(sup, tmp_path, joiner)
    line = donor_fails(node_dir, port, donor, "VERIFY_IDENTITY")
    assert any(f"rsync exited with 5: TLS: {reason} [" in line for reason in CASES[case]), line
    assert not (tmp_path / "dest" / rs.MAGIC_FILE).exists()


def test_joiner_names_a_donor_without_certificate(
    pki: PKI, tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    """A donor that presents no certificate (a stock donor configured without one) is
    refused in the handshake; the joiner logs why, and its ERROR line repeats it."""
    ours = pki.ca_file(pki.ours[0])
    jf = pki.leaf(ours, dns=["joiner"], ips=["127.0.0.1"])
    base = tmp_path / "joiner"
    (base / "data").mkdir(parents=True)
    write_cnf(
        base,
        {
            "ssl-mode": "VERIFY_CA",
            "ssl-ca": jf.ca,
            "ssl-cert": jf.cert,
            "ssl-key": jf.key,
            "sst-initial-timeout": "4",
            "sst-idle-timeout": "4",
        },
    )
    port = free_port()
    j = start_script("py_rsync", joiner_args(base, port, parent.pid))
    assert j.readline().startswith("ready ")
    kids = [p.pid for p in j.descendants()]
    conf = tmp_path / "nocert.conf"
    conf.write_text(
        f"foreground = yes\npid =\ndebug = warning\nclient = yes\nconnect = 127.0.0.1:{port}\n"
    )
    (tmp_path / "f").write_text("x")
    url = f"rsync://127.0.0.1:{port}/{rs.DEFAULT_MODULE}"
    push = subprocess.run(
        ["rsync", f"--rsh={rsm.find_stunnel()} {conf}", str(tmp_path / "f"), url],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert push.returncode == 5, push.stderr  # rsync never saw the joiner's greeting
    assert j.wait(timeout=60) != 0
    err = j.stderr()
    assert "refused a TLS connection: TLS: the peer certificate was refused: no peer " in err
    errors = error_lines(err)
    assert len(errors) == 1, errors
    assert (
        "last refused TLS connection: TLS: the peer certificate was refused: no peer" in (errors[0])
    )
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    assert sorted(os.listdir(base / "data")) == [STATUS_FILE]


def test_a_bare_close_before_the_greeting_is_named() -> None:
    """What the donor's stunnel 5.68 logged when the joiner refused its certificate after
    the client's side of a TLS 1.3 handshake had ended."""
    lines = [
        "2026.11.30 01:58:46 LOG3[0]: TLS socket closed (SSL_write) with 41 unsent byte(s)",
        "rsync: did not see server greeting",
        "rsync error: error starting client-server protocol (code 5) at main.c(1954)",
    ]
    assert st.failure_reason(lines).startswith("TLS: the peer closed the connection before")
    assert st.failure_reason(lines[1:]) == ""  # no TLS line: rsync's own words stay


def test_stunnel_checks_by_the_same_rule_as_the_preflight() -> None:
    files = TLSFiles(ca="/c/ca.pem", cert="/c/cert.pem", key="/c/key.pem")
    for name, line in [
        ("10.0.0.2", "checkIP = 10.0.0.2"),
        ("fd00::2", "checkIP = fd00::2"),
        ("node2.lab.test", "checkHost = node2.lab.test"),
        ("10.0.0.2.", "checkHost = 10.0.0.2."),
    ]:
        verify = st.Verify(chain=True).identity(name, ip=net.is_ip_literal(name))
        conf = st.client_conf(files, verify, "10.0.0.2:4444").splitlines()
        assert line in conf and sum(ln.startswith("check") for ln in conf) == 1
    pinned = st.server_conf(
        files,
        st.Verify(chain=True, peer=True),
        pid_file="/p",
        accept="4444",
        rsync="r",
        execargs="e",
    )
    assert "verifyChain = yes\nverifyPeer = yes\n" in pinned


def test_openssl_is_asked_safely() -> None:
    assert oss.identity_argv("/usr/bin/openssl", "/c.pem", "::1", ip=True)[-2:] == (
        "-checkip",
        "::1",
    )
    with pytest.raises(ConfigError):
        oss.identity_argv("/usr/bin/openssl", "/c.pem", "-text", ip=False)
    out = "Hostname a.b does NOT match certificate\n"
    assert oss.identity_matches(out, "a.b") is False
    assert oss.identity_matches("Hostname a.b does match certificate\n", "a.b") is True
    assert oss.identity_matches("unable to load certificate\n", "a.b") is None
