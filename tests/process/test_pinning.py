"""`[sst] ssl-peer-certs` (docs/tls.md, "Pinning peer certificates"): the rsync method, both
roles, accepts only the peer certificates listed, as the stock joiner's `verifyPeer` does,
on top of the chain (and name) checks of its ssl-mode. Real scripts, stunnel and rsync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sst import net
from testsupport import lab
from testsupport.process import (
    ROOT,
    UUID,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    no_processes_left,
    start_script,
    write_cnf,
)


@pytest.fixture
def pki(tmp_path: Path) -> lab.CertPaths:
    """One CA; 'joiner' and 'donor', and a 'stranger' the same CA also signed."""
    nodes = {"joiner": "127.0.0.1", "donor": "127.0.0.1", "stranger": "127.0.0.1"}
    return lab.make_certs(str(tmp_path / "certs"), nodes, owner="root")


def node(tmp: Path, name: str, pki: lab.CertPaths, who: str, pinned: str) -> Path:
    base = tmp / name
    (base / "data" / "db1").mkdir(parents=True)
    (base / "data" / "db1" / "t.ibd").write_bytes(name.encode() * 100)
    cert, key = pki.certs[who]
    opts = {"ssl-mode": "VERIFY_IDENTITY", "ssl-ca": pki.ca, "ssl-cert": cert, "ssl-key": key}
    if pinned:
        opts["ssl-peer-certs"] = pki.certs[pinned][0]
    opts["sst-initial-timeout"] = "6"
    write_cnf(base, opts)
    return base


def transfer(
    tmp: Path, pki: lab.CertPaths, parent: int, *, donor_as: str, joiner_pins: str, donor_pins: str
) -> tuple[int, str, int, str, int]:
    """One SST; returns (donor status, its stderr, joiner status, its stderr, port)."""
    j_base = node(tmp, "j", pki, "joiner", joiner_pins)
    d_base = node(tmp, "d", pki, donor_as, donor_pins)
    port = free_port()
    j = start_script("py_rsync", joiner_args(j_base, port, parent))
    ready = j.readline()
    assert ready.startswith("ready "), j.stderr()
    kids = [p.pid for p in j.descendants()]
    auth, _, address = ready[6:].rpartition("@")
    d = start_script(
        "py_rsync", donor_args(d_base, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    # Our donor's first connection (the origin file) precedes `flush tables`: a refused
    # peer ends it before the donor's tables are locked (EOF instead of the request).
    if d.readline() == "flush tables":
        flushed = d_base / "data" / "tables_flushed"
        flushed.with_suffix(".tmp").write_text(f"{UUID}:5 0\n")
        flushed.with_suffix(".tmp").rename(flushed)
    d_rc = d.wait()
    d_err = d.stderr()
    j_rc = j.wait()
    j_err = j.stderr()
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    return d_rc, d_err, j_rc, j_err, port


def test_pinned_peers_join(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes]
) -> None:
    d_rc, d_err, j_rc, j_err, _ = transfer(
        tmp_path, pki, parent.pid, donor_as="donor", joiner_pins="donor", donor_pins="joiner"
    )
    assert (d_rc, j_rc) == (0, 0), d_err + j_err
    data = (tmp_path / "j" / "data" / "db1" / "t.ibd").read_bytes()
    assert data == (tmp_path / "d" / "data" / "db1" / "t.ibd").read_bytes()
    assert "Accepting only the 1 peer certificate(s)" in j_err


def test_joiner_refuses_a_donor_not_pinned(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes]
) -> None:
    """The stranger's certificate chains to the same CA and names 127.0.0.1: only the pin
    tells it from the donor. Nothing reaches the joiner's datadir."""
    d_rc, d_err, j_rc, j_err, _ = transfer(
        tmp_path, pki, parent.pid, donor_as="stranger", joiner_pins="donor", donor_pins=""
    )
    assert d_rc != 0 and j_rc != 0
    assert len(error_lines(d_err)) == 1 and "rsync exited with 5: TLS: the peer" in d_err
    refusal = "the peer certificate was refused: certificate is not among the accepted peer"
    assert f"refused a TLS connection: TLS: {refusal}" in j_err
    [line] = error_lines(j_err)
    assert f"last refused TLS connection: TLS: {refusal}" in line
    assert (tmp_path / "j" / "data" / "db1" / "t.ibd").read_bytes() == b"j" * 100


def test_donor_refuses_a_joiner_not_pinned(
    tmp_path: Path, pki: lab.CertPaths, parent: subprocess.Popen[bytes]
) -> None:
    d_rc, d_err, j_rc, _, _ = transfer(
        tmp_path, pki, parent.pid, donor_as="donor", joiner_pins="", donor_pins="stranger"
    )
    assert d_rc != 0 and j_rc != 0
    [line] = error_lines(d_err)
    assert (
        "rsync exited with 5: TLS: the peer certificate was refused: certificate is not "
        "among the accepted peer certificates (CN=joiner)"
    ) in line


def test_pinning_needs_a_verify_mode(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    base = tmp_path / "n"
    (base / "data").mkdir(parents=True)
    pki = lab.make_certs(str(tmp_path / "certs"), {"joiner": "127.0.0.1"}, owner="root")
    cert, key = pki.certs["joiner"]
    write_cnf(
        base,
        {"ssl-mode": "REQUIRED", "ssl-cert": cert, "ssl-key": key, "ssl-peer-certs": cert},
    )
    j = start_script("py_rsync", joiner_args(base, free_port(), parent.pid))
    assert j.wait() != 0
    [line] = error_lines(j.stderr())
    assert "ssl-peer-certs needs ssl-mode VERIFY_CA or VERIFY_IDENTITY, not REQUIRED" in line


def test_check_reads_the_pinned_file(tmp_path: Path, pki: lab.CertPaths) -> None:
    """`galera-sst check` names the pinned certificates, and a file with none fails."""
    cert, key = pki.certs["joiner"]
    base = {"ssl-mode": "VERIFY_CA", "ssl-ca": pki.ca, "ssl-cert": cert, "ssl-key": key}
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificates here\n")
    for pinned, level, words in [
        (pki.certs["donor"][0], "pass", "1 in "),
        (str(empty), "fail", f"'{empty}': no PEM certificate in the file"),
    ]:
        (tmp_path / "n").mkdir(exist_ok=True)
        cnf = write_cnf(tmp_path / "n", {**base, "ssl-peer-certs": pinned})
        argv = [sys.executable, "-m", "sst", "check", "--method", "py_rsync", "--role", "joiner"]
        res = subprocess.run(
            [*argv, "--json", "--defaults-file", cnf],
            check=False,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=60,
        )
        rows = {r["check"]: r for r in json.loads(res.stdout)}
        row = rows["accepted peer certificates (joiner)"]
        assert row["level"] == level and words in row["detail"], row
        if level == "pass":
            assert row["detail"].endswith(": donor")
