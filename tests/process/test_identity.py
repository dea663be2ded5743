"""One identity rule everywhere (docs/tls.md, "Identity"): for each certificate shape, the
verdict OpenSSL's rules give, from all four checkers on real processes: `galera-sst check`,
the pre-flight (sst/tls.py), a real rsync push through the donor's stunnel client to a
stunnel server holding the certificate, and the mariabackup donor's tunnel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sst import config, net, tls
from sst.config import Options, TLSFiles
from sst.errors import ConfigError, SSTError, TLSError
from sst.methods import mariabackup as mbm
from sst.methods import rsync as rsm
from sst.methods.common import Run
from sst.process.runner import Stage, Supervisor
from sst.protocol import Stdout
from sst.request import parse_request
from sst.tools import rsync as rs
from sst.tools import socat as sc
from sst.tools import stunnel as st
from testsupport import lab
from testsupport.process import ROOT, free_port


@dataclass(frozen=True)
class Shape:
    """A certificate (CN, IP and DNS SANs), the name a donor checks, OpenSSL's verdict."""

    id: str
    name: str
    ok: bool
    cn: str = "x"
    ips: tuple[str, ...] = ()
    dns: tuple[str, ...] = field(default=())


SHAPES = [
    Shape("ip-cn-ip-san", "127.0.0.1", True, cn="127.0.0.1", ips=("127.0.0.1",)),
    # The common layout that failed on main: stunnel's checkHost ignores the CN once a
    # DNS SAN exists, and only checkIP looks at the IP SAN.
    Shape(
        "ip-cn-dns-and-ip-san",
        "127.0.0.1",
        True,
        cn="127.0.0.1",
        ips=("127.0.0.1",),
        dns=("joiner.lab.test",),
    ),
    Shape("ip-cn-no-san", "127.0.0.1", False, cn="127.0.0.1"),
    Shape("ip-only-in-san", "127.0.0.1", True, cn="joiner", ips=("127.0.0.1",)),
    Shape("ip-written-as-dns-san", "127.0.0.1", False, cn="joiner", dns=("127.0.0.1",)),
    Shape("other-ip-san", "127.0.0.1", False, ips=("127.0.0.2",)),
    Shape("dns-only-in-san", "joiner.lab.test", True, dns=("joiner.lab.test",)),
    Shape("cn-only", "joiner.lab.test", True, cn="joiner.lab.test"),
    Shape("cn-disagrees-with-san", "joiner", False, cn="joiner", dns=("other.lab.test",)),
    Shape("wildcard", "joiner.lab.test", True, dns=("*.lab.test",)),
    Shape("wildcard-covers-one-label", "a.joiner.lab.test", False, dns=("*.lab.test",)),
    Shape("partial-wildcard", "joiner.lab.test", True, dns=("j*.lab.test",)),
    Shape("trailing-dot-in-name", "joiner.lab.test.", False, dns=("joiner.lab.test",)),
    Shape("upper-case-name", "JOINER.LAB.TEST", True, dns=("joiner.lab.test",)),
    Shape("upper-case-san", "joiner.lab.test", True, dns=("JOINER.LAB.TEST",)),
    Shape("ipv6-san", "::1", True, ips=("::1",)),
    Shape("other-ipv6-san", "::1", False, ips=("fd00::2",)),
]


@dataclass(frozen=True)
class PKI:
    """One CA, a donor certificate, and the directory for each shape's joiner certificate."""

    ca: lab.CertPaths
    pair: tuple[object, object]
    directory: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("identity")
    ca = lab.make_ca("identity shapes CA")
    paths = lab.make_certs(str(d / "base"), {"donor": "127.0.0.1"}, owner="root")
    # make_certs made its own CA: reuse its files, and sign the shapes with a second CA
    # whose certificate is appended to the trusted file.
    with open(paths.ca, "ab") as f:
        f.write(lab.pem_cert(ca[0]))
    return PKI(paths, ca, d)


def shape_files(pki: PKI, shape: Shape) -> TLSFiles:
    """The shape's certificate, signed by the PKI's second CA, and its key."""
    ca = pki.pair
    cert, key = lab.make_leaf(ca, shape.cn, ips=shape.ips, dns=shape.dns)  # type: ignore[arg-type]
    d = pki.directory / shape.id
    d.mkdir(exist_ok=True)
    c, k = d / "cert.pem", d / "key.pem"
    c.write_bytes(lab.pem_cert(cert))
    k.write_bytes(lab.pem_key(key))
    os.chmod(k, 0o600)
    return TLSFiles(ca=pki.ca.ca, cert=str(c), key=str(k))


def donor_files(pki: PKI) -> TLSFiles:
    cert, key = pki.ca.certs["donor"]
    return TLSFiles(ca=pki.ca.ca, cert=cert, key=key)


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(shape: Shape) -> str:
    return "::1" if ":" in shape.name else "127.0.0.1"


def donor_env(shape: Shape) -> dict[str, str]:
    """The CN the joiner announces; an IPv6 name cannot be a `CN:secret` CN, so the donor
    checks the address it connects to instead (the same name)."""
    return {} if ":" in shape.name else {"WSREP_SST_OPT_REMOTE_AUTH": f"{shape.name}:s"}


# -- (a) galera-sst check --------------------------------------------------------------


def check_verdict(tmp: Path, files: TLSFiles, shape: Shape) -> bool:
    cnf = tmp / "check.cnf"
    cnf.write_text(
        "[mysqld]\n"
        f"wsrep_sst_receive_address={hostport(shape.name, 4444)}\n"
        "[sst]\n"
        "ssl-mode=VERIFY_IDENTITY\n"
        f"ssl-ca={files.ca}\nssl-cert={files.cert}\nssl-key={files.key}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "sst", "check", "--method", "py_rsync", "--role", "joiner"]
    res = subprocess.run(
        [*argv, "--json", "--defaults-file", str(cnf)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    rows = json.loads(res.stdout)
    row = next(r for r in rows if r["check"] == f"SST identity '{shape.name}'")
    return bool(row["level"] == "pass")


# -- (b) the pre-flight ------------------------------------------------------------------


def preflight_verdict(files: TLSFiles, shape: Shape) -> bool:
    checked = tls.check(files, role="joiner", need_ca=True)
    try:
        checked.require_identity(shape.name, "the donor checks it")
    except TLSError:
        return False
    return True


# -- (c) the rsync donor's stunnel client ------------------------------------------------


@pytest.fixture
def sup() -> Iterator[Supervisor]:
    with Supervisor() as s:
        yield s


def _options(files: TLSFiles) -> Options:
    sst = {"ssl-mode": "VERIFY_IDENTITY", "ssl-ca": files.ca}
    sst |= {"ssl-cert": files.cert, "ssl-key": files.key}
    return Options({config.MYSQLD: {}, "sst": sst})


def _stunnel_server(sup: Supervisor, tmp: Path, files: TLSFiles, host: str, port: int) -> None:
    dest = tmp / "dest"
    dest.mkdir()
    rconf = tmp / "rsyncd.conf"
    rconf.write_text(
        rs.daemon_conf(
            rs.Daemon(
                pid_file=str(tmp / "rsyncd.pid"),
                modules=[(rs.DEFAULT_MODULE, str(dest))],
                timeout=30,
                owner=(0, 0) if os.geteuid() == 0 else None,
            )
        )
    )
    sconf = tmp / "server.conf"
    sconf.write_text(
        st.server_conf(
            files,
            st.Verify(chain=True),
            pid_file=str(tmp / "stunnel.pid"),
            accept=f"{host}:{port}",  # stunnel takes the last ':' as the port's
            rsync="/usr/bin/rsync",
            execargs=rs.server_execargs(rconf.name),
        )
    )
    server = sup.start(
        Stage(st.argv(rsm.find_stunnel(), str(sconf)), name="stunnel", cwd=str(rconf.parent))
    )
    sup.wait_until(
        lambda: net.tree_listens(server.pid, port),
        what="stunnel listening",
        timeout=10,
        alive=[server],
    )


def stunnel_verdict(sup: Supervisor, tmp: Path, pki: PKI, files: TLSFiles, shape: Shape) -> bool:
    host = connect_host(shape)
    port = free_port(host)
    _stunnel_server(sup, tmp, files, host, port)
    env = donor_env(shape)
    req = parse_request(
        "wsrep_sst_py_rsync",
        ["--role", "donor", "--address", hostport(host, port), "--datadir", str(tmp)],
        env,
    )
    s = config.rsync_settings(req, _options(donor_files(pki)))
    rundir = tmp / "run"
    rundir.mkdir()
    run = Run(req, sup, Stdout(), str(rundir))
    push = rsm._push(run, s, rsm.find_stunnel())
    payload = tmp / "payload"
    payload.write_text("identity\n")
    child = sup.start(rsm._rsync(rs.magic_pass("/usr/bin/rsync", push, str(payload)), push))
    try:
        sup.wait([child], what="pushing through stunnel", timeout=30)
    except SSTError:
        return False
    return (tmp / "dest" / "payload").read_text() == "identity\n"


# -- (d) the mariabackup donor's tunnel --------------------------------------------------


def mariabackup_verdict(
    sup: Supervisor, tmp: Path, pki: PKI, files: TLSFiles, shape: Shape
) -> bool:
    host = connect_host(shape)
    port = free_port(host)
    v6 = ":" in host
    jplan = config.SocatPlan("TLS", files, True, False, "VERIFY_CA")
    dplan = config.SocatPlan("TLS", donor_files(pki), True, True, "VERIFY_IDENTITY")
    jdir, ddir = tmp / "j", tmp / "d"
    jdir.mkdir()
    ddir.mkdir()
    received = tmp / "received"
    listen = sc.listen_argv(
        "/usr/bin/socat",
        port=port,
        bind=host,
        ipv6=v6,
        tls=mbm._socat_tls(jplan, "", str(jdir)),
        ack_wait=1,
    )
    with open(received, "wb") as out:
        listener = sup.start(
            Stage(listen, name="socat-listen", cwd=str(jdir)), stdin=subprocess.PIPE, stdout=out
        )
    sup.wait_until(lambda: net.tree_listens(listener.pid, port), what="socat listening", timeout=10)
    req = parse_request(
        "wsrep_sst_py_mariabackup",
        ["--role", "donor", "--address", hostport(host, port), "--datadir", str(tmp)],
        donor_env(shape),
    )
    name = mbm._donor_commonname(dplan, req)
    assert dplan.files is not None
    try:
        tunnel = mbm.donor_tunnel(
            str(ddir), dplan.files, st.name_check(name), host=host, port=port, ipv6=v6
        )
    except ConfigError:
        return False  # the donor refuses to start its tunnel for this name
    donor = sup.start(tunnel, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert donor.popen.stdin is not None
    try:
        donor.popen.stdin.write(b"identity\n")
        donor.popen.stdin.close()
    except BrokenPipeError:
        pass
    # The joiner's end answers nothing: once the bytes are in (or the donor gave up), close
    # it so that the donor's stunnel stops waiting for an acknowledgement.
    sup.wait_until(
        lambda: received.read_bytes() == b"identity\n" or donor.poll() is not None,
        what="the stream through the donor's tunnel",
        timeout=30,
    )
    sup.stop(listener)
    try:
        sup.wait([donor], what="sending through the donor's tunnel", timeout=30)
    except SSTError:
        return False
    if st.failure(list(donor.tail), name):
        return False
    return received.read_bytes() == b"identity\n"


# -- the table ---------------------------------------------------------------------------


def _cases() -> list[object]:
    out: list[object] = []
    for shape in SHAPES:
        for checker in ("check", "preflight", "stunnel", "mariabackup"):
            out.append(pytest.param(shape, checker, id=f"{shape.id}-{checker}"))
    return out


@pytest.mark.parametrize(("shape", "checker"), _cases())
def test_same_certificate_same_verdict_everywhere(
    shape: Shape, checker: str, pki: PKI, sup: Supervisor, tmp_path: Path
) -> None:
    files = shape_files(pki, shape)
    if checker == "check":
        verdict = check_verdict(tmp_path, files, shape)
    elif checker == "preflight":
        verdict = preflight_verdict(files, shape)
    elif checker == "stunnel":
        verdict = stunnel_verdict(sup, tmp_path, pki, files, shape)
    else:
        verdict = mariabackup_verdict(sup, tmp_path, pki, files, shape)
    assert verdict is shape.ok
