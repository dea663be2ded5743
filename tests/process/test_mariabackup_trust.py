"""The mariabackup joiner lets only the donor's stream reach mbstream (process tier, no
mariadbd): a third party holding a certificate from the cluster's CA (CN=mallory) is
refused in either stage before any of its bytes reach mbstream, and the real donor, which
proves the secret, is still served. A donor with a wrong secret is refused too."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sst import gate, net
from sst.config import TLSFiles
from sst.errors import ConfigError
from sst.methods import mariabackup as mbm
from sst.process.runner import Supervisor
from sst.tools import socat as sc
from sst.tools import stunnel as st
from testsupport import lab
from testsupport.process import (
    UUID,
    Script,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    mbstream_of,
    no_processes_left,
    start_script,
    tls_peer_exchange,
    write_cnf,
)

MARKER = "mallory_marker"


def mallory(port: int, certs: lab.CertPaths, payload: bytes, timeout: float = 20.0) -> bytes:
    """Connect with mallory's certificate (same CA) as soon as the port listens, send
    payload, and return what the joiner answered before it closed the connection."""
    return tls_peer_exchange(
        ("127.0.0.1", port),
        certs.ca,
        certs.certs["mallory"],
        payload,
        deadline=time.monotonic() + timeout,
    )


class Watch:
    """Polls a tree for file names while a test runs (what mbstream extracted, and where)."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for root in self.roots:
                for _, _, files in os.walk(root):
                    self.seen.update(files)
            time.sleep(0.002)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join()
        return self.seen


@pytest.fixture
def pki(tmp_path: Path) -> lab.CertPaths:
    return lab.make_certs(
        str(tmp_path / "certs"),
        {"j": "127.0.0.1", "d": "127.0.0.1", "mallory": "127.0.0.1"},
        owner="root",
    )


def node(tmp: Path, name: str, pki: lab.CertPaths, mode: str) -> Path:
    base = tmp / name
    (base / "data").mkdir(parents=True)
    (base / "tmp").mkdir()
    write_cnf(base, {**lab.tls_options(pki, name, mode), "tmpdir": str(base / "tmp")})
    return base


def ready(js: Script) -> tuple[str, str, str]:
    """(auth, address, secret) from the joiner's `ready` line."""
    line = js.readline()
    assert line.startswith("ready ")
    auth, _, address = line[6:].rpartition("@")
    return auth, address, auth.partition(":")[2]


@pytest.fixture
def joiner(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes]
) -> Iterator[tuple[Script, int, Path]]:
    j = node(tmp_path, "j", pki, "VERIFY_IDENTITY")
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(j, port, parent.pid))
    yield js, port, j
    if js.proc.poll() is None:
        js.proc.terminate()
        js.wait()
        print(js.stderr())


def mallory_stream(tmp: Path) -> bytes:
    """What mallory sends: a state-files stream asking for IST at its own position."""
    return mbstream_of(
        tmp / "mallory",
        {
            MARKER: b"mallory was here\n",
            "xtrabackup_galera_info": f"{UUID}:99 0\n".encode(),
            "xtrabackup_ist": b"1\n",
        },
    )


def test_third_party_refused_in_stage_1_then_the_donor_completes(
    tmp_path: Path, pki: lab.CertPaths, joiner: tuple[Script, int, Path]
) -> None:
    js, port, j = joiner
    watch = Watch(j)
    auth, address, _ = ready(js)
    assert address.endswith("/xtrabackup_sst/galera-sst-gate/1")
    assert mallory(port, pki, mallory_stream(tmp_path)) == b""  # no `ok` for mallory
    d = node(tmp_path, "d", pki, "VERIFY_IDENTITY")
    ds = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    assert ds.readline() == "continue"
    assert ds.readline() == f"done {UUID}:5"
    assert ds.wait() == 0
    assert js.readline() == f"{UUID}:5 0"  # the donor's position, not mallory's :99
    assert js.wait() == 0
    err = js.stderr()
    refusals = [ln for ln in err.splitlines() if "Refused a connection" in ln]
    assert len(refusals) == 1 and "(stage 1)" in refusals[0], err
    assert "did not start with this joiner's secret" in refusals[0]
    assert MARKER not in watch.stop()
    assert error_lines(err) == []
    assert not net.port_in_use(port, "127.0.0.1")
    assert no_processes_left([p.pid for p in js.descendants()])


def send_stage(
    tmp: Path,
    pki: lab.CertPaths,
    port: int,
    number: int,
    secret: str,
    stream: bytes,
    *,
    preamble: bool = True,
) -> bytes:
    """Send one stage as our donor does (preamble, then the stream) through the donor's
    tunnel (mariabackup.donor_tunnel); returns the joiner's answer."""
    rundir = tmp / f"send{number}"
    rundir.mkdir()
    files = TLSFiles(pki.ca, "", *pki.certs["d"])
    tunnel = mbm.donor_tunnel(
        str(rundir),
        files,
        st.name_check("127.0.0.1"),
        host="127.0.0.1",
        port=port,
        connect_for=20,
    )
    payload = rundir / "payload"
    payload.write_bytes((gate.preamble(number, secret) if preamble else b"") + stream)
    with Supervisor() as sup, open(payload, "rb") as src:
        kid = sup.start(tunnel, stdin=src, stdout=subprocess.PIPE)
        sup.wait([kid], what=f"stage {number}", timeout=60)
        assert kid.popen.stdout is not None
        answer = kid.popen.stdout.read()
    assert st.failure(list(kid.tail)) == "", kid.tail
    return answer


def test_third_party_refused_in_stage_2_then_the_donor_is_served(
    tmp_path: Path, pki: lab.CertPaths, joiner: tuple[Script, int, Path]
) -> None:
    js, port, j = joiner
    watch = Watch(j)
    _, _, secret = ready(js)
    state = mbstream_of(
        tmp_path / "state",
        {"xtrabackup_galera_info": f"{UUID}:5 0\nsecret {secret}\n".encode()},
    )
    assert send_stage(tmp_path, pki, port, 1, secret, state) == b"ok\n"
    assert mallory(port, pki, mallory_stream(tmp_path)) == b""
    assert send_stage(tmp_path, pki, port, 2, secret, fake_backup(tmp_path)) == b"ok\n"
    # The stream was accepted; prepare then fails on this made-up backup (no mariadbd here).
    assert js.wait() != 0
    seen = watch.stop()
    assert "donor_payload" in seen  # the watch does see what mbstream extracts
    assert MARKER not in seen
    err = js.stderr()
    refusals = [ln for ln in err.splitlines() if "Refused a connection" in ln]
    assert len(refusals) == 1 and "(stage 2)" in refusals[0], err
    assert not net.port_in_use(port, "127.0.0.1")


def test_donor_with_a_wrong_secret_is_refused(
    tmp_path: Path, pki: lab.CertPaths, joiner: tuple[Script, int, Path]
) -> None:
    js, _, _ = joiner
    auth, address, secret = ready(js)
    d = node(tmp_path, "d", pki, "VERIFY_IDENTITY")
    wrong = auth.replace(secret, "0" * len(secret))
    bad = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": wrong},
    )
    assert bad.readline() == "continue"
    assert bad.readline() == ""  # no `done`
    assert bad.wait() == 32
    errors = error_lines(bad.stderr())
    assert len(errors) == 1 and "did not acknowledge" in errors[0]
    good = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    assert good.readline() == "continue"
    assert good.readline() == f"done {UUID}:5"
    assert good.wait() == 0
    assert js.readline() == f"{UUID}:5 0"
    assert js.wait() == 0
    err = js.stderr()
    assert sum("Refused a connection" in ln for ln in err.splitlines()) == 1, err


def leaf(
    directory: Path,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    name: str,
    *,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> tuple[str, str]:
    """A certificate CN=name with the given SANs from ca, and its key."""
    cert, key = lab.make_leaf(ca, name, dns=dns, ips=ips)
    c, k = directory / f"{name}.pem", directory / f"{name}.key"
    c.write_bytes(lab.pem_cert(cert))
    k.write_bytes(lab.pem_key(key))
    return str(c), str(k)


@pytest.mark.parametrize(
    ("sans", "announced", "checked"),
    [
        # CN=joiner with a DNS SAN naming another host: OpenSSL ignores the CN (socat's own
        # check accepted it).
        ({"dns": ["other"], "ips": []}, "joiner", "joiner"),
        # An IP address matches only an IP SAN, never a DNS SAN spelling it.
        ({"dns": ["127.0.0.1"], "ips": []}, "", "127.0.0.1"),
    ],
)
def test_donor_checks_the_joiner_name_as_openssl(
    tmp_path: Path,
    parent: subprocess.Popen[bytes],
    sans: dict[str, list[str]],
    announced: str,
    checked: str,
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = lab.make_ca("trust CA")
    (certs / "ca.pem").write_bytes(lab.pem_cert(ca[0]))
    jcert, jkey = leaf(certs, ca, "joiner", dns=sans["dns"], ips=sans["ips"])
    dcert, dkey = leaf(certs, ca, "donor", ips=["127.0.0.1"])
    common = {"ssl-ca": str(certs / "ca.pem")}
    j, d = tmp_path / "j", tmp_path / "d"
    for base, mode, cert, key in (
        (j, "VERIFY_CA", jcert, jkey),
        (d, "VERIFY_IDENTITY", dcert, dkey),
    ):
        (base / "data").mkdir(parents=True)
        write_cnf(
            base,
            {
                **common,
                "ssl-mode": mode,
                "ssl-cert": cert,
                "ssl-key": key,
                "sst-initial-timeout": "4",
            },
        )
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(j, port, parent.pid))
    auth, address, secret = ready(js)
    assert auth == f"joiner:{secret}"  # VERIFY_CA announces the CN too
    ds = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": f"{announced}:{secret}"},
    )
    assert ds.readline() == "continue"
    assert ds.readline() == ""  # no `done`
    assert ds.wait() == 32
    errors = error_lines(ds.stderr())
    assert len(errors) == 1, errors
    assert (
        "the TLS connection to the joiner failed: hostname mismatch: the peer's certificate "
        f"does not name '{checked}'"
    ) in errors[0]
    assert js.wait(30) == 32
    jerr = js.stderr()
    jerrors = error_lines(jerr)
    assert len(jerrors) == 1
    assert "the last one was refused: the TLS handshake failed: the peer rejected" in jerrors[0], (
        jerr
    )
    assert not net.port_in_use(port, "127.0.0.1")


def test_failure_reasons_from_tunnel_logs() -> None:
    stunnel_lines = [
        "2026.11.30 02:00:03 LOG4[0]: CERT: Pre-verification error: certificate has expired",
        "2026.11.30 02:00:03 LOG4[0]: Rejected by CERT at depth=0: CN=joiner",
        "2026.11.30 02:00:03 LOG5[0]: Connection closed/reset: 0 byte(s) sent to TLS",
    ]
    assert st.failure(stunnel_lines) == "expired certificate: certificate has expired"
    assert st.failure(stunnel_lines[2:]) == "the connection was reset"
    assert st.failure(["2026.11.30 LOG5[0]: Connection closed: 9 byte(s) sent to TLS"]) == ""
    assert st.name_check("10.0.0.2") == st.Verify(chain=True, ips=("10.0.0.2",))
    assert st.name_check("[::1]") == st.Verify(chain=True, ips=("::1",))
    assert st.name_check("db-2.example") == st.Verify(chain=True, hosts=("db-2.example",))
    line = (
        "2026/11/30 socat[1] E SSL_accept(): error:0A0000C7:SSL routines::"
        "peer did not return a certificate"
    )
    assert sc.tls_failure([line]).startswith("no certificate (the peer sent none)")


def test_exec_client_conf() -> None:
    files = TLSFiles("/ca.pem", "", "/c.pem", "/k.pem")
    conf = st.exec_client_conf(
        files, st.name_check("10.0.0.2"), ("/usr/bin/socat", "STDIO", "TCP:10.0.0.2:4444")
    ).splitlines()
    assert "client = yes" in conf and not any(ln.startswith("connect") for ln in conf)
    assert "exec = /usr/bin/socat" in conf
    assert "execArgs = /usr/bin/socat STDIO TCP:10.0.0.2:4444" in conf
    assert "verifyChain = yes" in conf and "checkIP = 10.0.0.2" in conf
    assert not any(ln.startswith("checkHost") for ln in conf)
    with pytest.raises(ConfigError, match="white space"):
        st.exec_client_conf(files, st.Verify(), ("/usr/bin/socat", "TCP:h:1,bind=a b"))


def fake_backup(tmp: Path) -> bytes:
    """A stage-2 stream that passes the joiner's checks (prepare then fails on it)."""
    return mbstream_of(
        tmp / "backup",
        {
            "xtrabackup_checkpoints": b"backup_type = full-backuped\nfrom_lsn = 0\n",
            "donor_payload": os.urandom(100000),
        },
    )


@pytest.mark.parametrize("ours", [True, False])
def test_stock_named_joiner_gates_stage_2_when_the_donor_is_ours(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes], ours: bool
) -> None:
    """Under the stock name the donor may be a stock script: stage 1 is received as stock
    does (the secret checked in the state files); our donor says there that stage 2 starts
    with the preamble, and then mallory is refused in stage 2. A stock donor says nothing
    and sends stage 2 without a preamble, which is accepted, as between stock scripts."""
    j = node(tmp_path, "j", pki, "VERIFY_IDENTITY")
    port = free_port()
    js = start_script("mariabackup", joiner_args(j, port, parent.pid))
    try:
        watch = Watch(j)
        _, address, secret = ready(js)
        assert address.endswith("/xtrabackup_sst/galera-sst-gate2/1")
        info = f"{UUID}:5 0\nsecret {secret}\n" + ("galera-sst-gate 2\n" if ours else "")
        state = mbstream_of(tmp_path / "state", {"xtrabackup_galera_info": info.encode()})
        assert send_stage(tmp_path, pki, port, 1, secret, state, preamble=False) == b"ok\n"
        if ours:
            assert mallory(port, pki, mallory_stream(tmp_path)) == b""
        backup = fake_backup(tmp_path)
        assert send_stage(tmp_path, pki, port, 2, secret, backup, preamble=ours) == b"ok\n"
        assert js.wait() != 0  # prepare fails on the made-up backup (no mariadbd here)
        seen = watch.stop()
        assert "donor_payload" in seen
        assert MARKER not in seen
        err = js.stderr()
        refusals = [ln for ln in err.splitlines() if "Refused a connection" in ln]
        assert len(refusals) == (1 if ours else 0), err
        assert ("does not prove the secret on stage 2" in err) is not ours
    finally:
        if js.proc.poll() is None:
            js.proc.kill()
            js.wait()


def test_stock_named_joiner_discards_a_third_partys_state_files(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes]
) -> None:
    """Under the stock name stage 1 is not gated (a stock donor sends no preamble), so
    mallory's state files are extracted, into the joiner's private directory; they lack the
    secret, so they are discarded and the joiner waits on, and our donor's IST completes."""
    j = node(tmp_path, "j", pki, "VERIFY_CA")
    port = free_port()
    js = start_script("mariabackup", joiner_args(j, port, parent.pid))
    auth, address, _ = ready(js)
    assert mallory(port, pki, mallory_stream(tmp_path)) == b""
    d = node(tmp_path, "d", pki, "VERIFY_CA")
    ds = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    assert ds.readline() == "continue"
    assert ds.readline() == f"done {UUID}:5"
    assert ds.wait() == 0
    assert js.readline() == f"{UUID}:5 0"  # the donor's position, not mallory's :99
    assert js.wait() == 0
    err = js.stderr()
    refusals = [ln for ln in err.splitlines() if "Refused a connection" in ln]
    assert len(refusals) == 1 and "does not know this joiner's secret" in refusals[0], err
    assert error_lines(err) == []
    assert not any(MARKER in files for _, _, files in os.walk(j))
    assert not net.port_in_use(port, "127.0.0.1")
