"""The rsync scripts end to end without mariadbd: the test reads their stdout and answers
as mariadbd would. Every failure asserts the exit code, one ERROR line, and no debris."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sst import datadir, net, records, tls
from sst.request import NO_NAME
from sst.tools import rsync as rs
from testsupport import lab
from testsupport.process import (
    ROOT,
    UUID,
    act_as_donor_server,
    assert_no_debris,
    certs_for,
    donor_args,
    error_lines,
    fake_tool,
    free_port,
    joiner_args,
    no_processes_left,
    snapshot,
    start_script,
    tls_opts,
    write_cnf,
)


@pytest.mark.parametrize("mode", ["DISABLED", "VERIFY_IDENTITY"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_manual_sst_replaces_data_keeps_grastate(
    node_dir: Path,
    joiner_dir: Path,
    parent: subprocess.Popen[bytes],
    tmp_path: Path,
    mode: str,
    host: str,
) -> None:
    if mode != "DISABLED":
        c = certs_for(tmp_path, host)
        write_cnf(joiner_dir, tls_opts(c, "joiner", mode))
        write_cnf(node_dir, tls_opts(c, "donor", mode))
    port = free_port(host)
    hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = joiner_args(joiner_dir, port, parent.pid)
    args[args.index("--address") + 1] = hostport
    j = start_script("py_rsync", args)
    ready = j.readline()
    assert ready.startswith("ready ")
    auth, _, address = ready[6:].rpartition("@")
    # The record id it holds (none: records.NONE) before the per-SST token (sst/records.py).
    want = re.escape(f"{hostport}/rsync_sst_r{records.NONE}_") + "[0-9a-f]{32}"
    assert re.fullmatch(want, address), address
    cn, secret = auth.split(":")
    # The certificate's CN in VERIFY modes; outside them too when the certificate matches
    # it (a stock donor that checks a name checks that one), else NO_NAME (MariaDB 11).
    named = mode.startswith("VERIFY") or (
        mode != "DISABLED" and tls.identity_matches(c.certs["joiner"][0], "joiner")
    )
    assert cn == ("joiner" if named else NO_NAME) and len(secret) == 32
    d = start_script(
        "py_rsync", donor_args(node_dir, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    jd, dd = joiner_dir / "data", node_dir / "data"
    assert (jd / "db1" / "t.ibd").read_bytes() == (dd / "db1" / "t.ibd").read_bytes()
    assert (jd / "ibdata1").read_bytes() == (dd / "ibdata1").read_bytes()
    assert (jd / "ib_logfile0").exists() and (jd / "aria_log_control").exists()
    assert not (jd / "dropped_db").exists()
    assert (jd / "grastate.dat").read_text() == "joiner's own state\n"
    assert_no_debris(jd)
    assert_no_debris(dd)
    assert not net.port_in_use(port, host)
    err = j.stderr()
    assert error_lines(err) == []
    assert "py_rsync SST completed on joiner" in err


def test_wrong_secret_refused_before_datadir_changes(
    node_dir: Path,
    joiner_dir: Path,
    parent: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    c = certs_for(tmp_path)
    write_cnf(joiner_dir, tls_opts(c, "joiner", "VERIFY_CA"))
    write_cnf(node_dir, tls_opts(c, "donor", "VERIFY_CA"))
    before = snapshot(joiner_dir / "data")
    port = free_port()
    # Under the stock name the module has no rsync users (the donor may be stock): the
    # secret in the completion file is what refuses the data.
    j = start_script("rsync", joiner_args(joiner_dir, port, parent.pid))
    auth, _, address = j.readline()[6:].rpartition("@")
    real_secret = auth.split(":")[1]
    d = start_script(
        "rsync",
        donor_args(node_dir, address),
        env={"WSREP_SST_OPT_REMOTE_AUTH": "joiner:" + "0" * 32},
    )
    act_as_donor_server(d, node_dir / "data")
    d.wait()
    assert j.readline() == ""  # no coordinates
    assert j.wait() == 32
    err = j.stderr()
    assert len(error_lines(err)) == 1 and "does not know this joiner's secret" in err
    assert real_secret not in err and "0" * 32 not in err
    assert snapshot(joiner_dir / "data") == before
    assert not net.port_in_use(port, "127.0.0.1")


def test_ist_bypass_leaves_datadir(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    before = snapshot(joiner_dir / "data")
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j.readline()[6:]
    d = start_script("py_rsync", donor_args(node_dir, address, bypass=True))
    assert d.readline() == "continue"
    assert d.readline() == f"done {UUID}:5 0"
    assert d.wait() == 0
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0
    assert snapshot(joiner_dir / "data") == before
    assert "IST requested by the donor" in j.stderr()


def test_joiner_port_busy(joiner_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
        assert j.readline() == ""
        assert j.wait() == 16
    err = j.stderr()
    assert len(error_lines(err)) == 1 and "already in use" in err
    assert_no_debris(joiner_dir / "data")


def test_joiner_parent_dies(joiner_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    before = snapshot(joiner_dir / "data")
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    kids = [p.pid for p in j.descendants()]
    parent.kill()
    parent.wait()
    assert j.wait(20) == 32
    assert "terminated unexpectedly" in error_lines(j.stderr())[0]
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    assert snapshot(joiner_dir / "data") == before


def test_joiner_no_donor_times_out(joiner_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    write_cnf(joiner_dir, {"sst-initial-timeout": "1"})
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    assert j.wait(30) == 32
    assert "no donor connected within 1 s" in error_lines(j.stderr())[0]
    assert_no_debris(joiner_dir / "data")
    assert not net.port_in_use(port, "127.0.0.1")


def test_joiner_sigterm(joiner_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    kids = [p.pid for p in j.descendants()]
    j.proc.send_signal(signal.SIGTERM)
    assert j.wait(20) == 3
    assert no_processes_left(kids)
    assert_no_debris(joiner_dir / "data")


def test_donor_flush_failed(node_dir: Path) -> None:
    write_cnf(node_dir, {"rsync-precopy": "0"})  # straight to the lock: no joiner here
    d = start_script("py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"))
    assert d.readline() == "flush tables"
    (node_dir / "data" / "sst_error").write_text("")
    assert d.wait() == 255
    assert "could not FLUSH TABLES" in error_lines(d.stderr())[0]
    assert not (node_dir / "data" / "sst_error").exists()


def test_donor_refuses_a_lock_at_no_position(node_dir: Path, fakebin: Path) -> None:
    """mariadbd wrote `uuid:-1` for the lock of a donation that started at `uuid:5` (the
    server left the donor state first: a Galera race seen on 11.8): the donor sends nothing
    and says why in one line, instead of handing the joiner a snapshot of unknown position."""
    write_cnf(node_dir, {"rsync-precopy": "0"})
    calls = fakebin / "calls"
    fake_tool(fakebin, "rsync", f"echo called >> {calls}; exit 0")
    d = start_script(
        "py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"), path_prefix=str(fakebin)
    )
    assert d.readline() == "flush tables"
    (node_dir / "data" / "tables_flushed").write_text(f"{UUID}:-1 0\n")
    assert d.wait() == 255
    errors = error_lines(d.stderr())
    assert len(errors) == 1, errors
    want = f"locked the tables at {UUID}:-1, not at a position of the donation's {UUID}:5"
    assert want in errors[0]
    assert not calls.exists()  # nothing was sent
    assert_no_debris(node_dir / "data")


def test_donor_flush_timeout(node_dir: Path) -> None:
    write_cnf(node_dir, {"sst-flush-timeout": "1", "rsync-precopy": "0"})
    d = start_script("py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"))
    assert d.readline() == "flush tables"
    assert d.wait() == 32
    assert "FLUSH TABLES WITH READ LOCK: not done after 1 s" in error_lines(d.stderr())[0]


def test_donor_rsync_protocol_error_and_tree_killed(node_dir: Path, fakebin: Path) -> None:
    write_cnf(node_dir, {"rsync-precopy": "0"})  # the failure under the lock, as stock
    pidlog = fakebin / "pids"
    fake_tool(
        fakebin,
        "rsync",
        f"sleep 60 & echo $! >> {pidlog}\necho 'rsync: protocol version mismatch' >&2; exit 12",
    )
    d = start_script(
        "py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"), path_prefix=str(fakebin)
    )
    act = d.readline()
    assert act == "flush tables"
    (node_dir / "data" / "tables_flushed").write_text(f"{UUID}:5 0\n")
    assert d.wait() == 71
    errors = error_lines(d.stderr())
    assert len(errors) == 1 and "protocol version mismatch" in errors[0]
    assert "py_rsync donor, peer 127.0.0.1:9" in errors[0]
    assert_no_debris(node_dir / "data")
    orphans = [int(x) for x in pidlog.read_text().split()]
    assert orphans and no_processes_left(orphans)


def test_donor_refuses_cleartext_without_stunnel(
    node_dir: Path, fakebin: Path, tmp_path: Path
) -> None:
    c = certs_for(tmp_path)
    write_cnf(node_dir, tls_opts(c, "donor", "REQUIRED"))
    # A PATH with every tool but stunnel.
    for tool in ("rsync", "tar", "my_print_defaults"):
        found = shutil.which(tool)
        assert found
        os.symlink(found, fakebin / tool)
    env = {"PATH": str(fakebin), "STUNNEL_BIN": ""}
    d = start_script("py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"), env=env)
    assert d.readline() == ""  # not even 'flush tables'
    assert d.wait() == 2
    assert "refusing to send in cleartext" in error_lines(d.stderr())[0]


def test_unknown_method_name() -> None:
    s = start_script("py_nonsense", ["--role", "joiner", "--datadir", "/tmp/x"])
    assert s.wait() == 22
    assert "unknown SST method 'py_nonsense'" in error_lines(s.stderr())[0]


@pytest.mark.parametrize("name", ["rsync_wan", "py_rsync_wan", "rsync", "py_rsync"])
def test_rsync_basis_staging_by_name(
    node_dir: Path,
    joiner_dir: Path,
    parent: subprocess.Popen[bytes],
    name: str,
) -> None:
    """Whatever the name, the announced modules stage into an empty directory (a stock
    donor's --inplace is harmless there) and, when grastate.dat names a cluster, the old
    files are hard-linked (the same inodes) into the separate basis staging that only
    `<module>.basis` modules reach. Our donor of that cluster sends into the basis and
    says so. Seen in the staging directories while the joiner waits for its donor."""
    jd = joiner_dir / "data"
    (jd / "grastate.dat").write_text(f"version: 2.1\nuuid:    {UUID}\nseqno:   -1\n")
    port = free_port()
    j = start_script(name, joiner_args(joiner_dir, port, parent.pid))
    ready = j.readline()
    assert ready.startswith("ready "), j.stderr()
    assert ready.endswith("_b" + UUID.replace("-", "")), ready
    staged = jd / datadir.STAGING
    staged_files = {p.relative_to(staged) for p in staged.rglob("*") if p.is_file()}
    assert staged.is_dir() and staged_files == set(), staged_files
    basis = jd / datadir.BASIS
    shared = {
        rel
        for rel in (p.relative_to(basis) for p in basis.rglob("*") if p.is_file())
        if (basis / rel).stat().st_ino == (jd / rel).stat().st_ino
    }
    assert Path("db1/t.ibd") in shared and Path("ibdata1") in shared, shared
    auth, _, address = ready[6:].rpartition("@")
    env = {"WSREP_SST_OPT_REMOTE_AUTH": auth} if name.startswith("py_") else None
    d = start_script(name, donor_args(node_dir, address if env else ready[6:]), env=env)
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert f"Basis rule: basis: same cluster UUID {UUID}" in d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    err = j.stderr()
    assert "Offering the old datadir as the basis" in err
    assert "The donor sent into the basis staging" in err
    assert ("delta mode" in err) == name.endswith("_wan")
    for rel in ("db1/t.ibd", "ibdata1"):
        assert (jd / rel).read_bytes() == (node_dir / "data" / rel).read_bytes()
    assert not (jd / "dropped_db").exists()
    assert not basis.exists() and not staged.exists() and not (jd / rs.ORIGIN_FILE).exists()


def test_mysqldump_refuses_transfer_to_itself(node_dir: Path) -> None:
    s = start_script(
        "mysqldump",
        [
            "--address",
            "127.0.0.1:3306",
            "--port",
            "3306",
            "--local-port",
            "3306",
            "--socket",
            "/tmp/none.sock",
            "--datadir",
            str(node_dir / "data"),
            "--defaults-file",
            str(node_dir / "my.cnf"),
            "--gtid",
            f"{UUID}:5,0-1-5",
            "--gtid-domain-id",
            "0",
        ],
    )
    assert s.readline() == ""  # mariadbd never reads this script's stdout: nothing there
    assert s.wait() == 22
    errors = error_lines(s.stderr())
    assert len(errors) == 1 and "matches this server" in errors[0]


def test_backup_method_has_no_joiner(node_dir: Path) -> None:
    s = start_script(
        "py_backup",
        ["--role", "joiner", "--address", "127.0.0.1:1", "--datadir", str(node_dir / "data")],
    )
    assert s.wait() == 22
    assert "no joiner side" in error_lines(s.stderr())[0]


def test_joiner_sigkill_leaves_no_listener(
    joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    """SIGKILL runs no cleanup: the children still die (parent-death signal), the port is
    freed, and the next SST on this datadir starts normally."""
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    kids = [p.pid for p in j.descendants()]
    assert kids
    j.proc.kill()
    j.wait()
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    j2 = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j2.readline().startswith("ready ")
    j2.proc.send_signal(signal.SIGTERM)
    assert j2.wait(20) == 3
    assert_no_debris(joiner_dir / "data")


def test_status_file_tells_how_the_last_sst_ended(
    joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    write_cnf(joiner_dir, {"sst-initial-timeout": "1"})
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    assert j.wait(30) == 32
    res = subprocess.run(
        [sys.executable, "-m", "sst", "status", "--datadir", str(joiner_dir / "data"), "--json"],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        check=False,
    )
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert (data["state"], data["role"], data["exit_code"]) == ("failed", "joiner", 32)
    assert "no donor connected" in data["error"] and data["phase"] == "receiving"
    human = subprocess.run(
        [sys.executable, "-m", "sst", "status", "--datadir", str(joiner_dir / "data")],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        check=False,
    ).stdout
    assert "py_rsync joiner (failed)" in human and "error (exit 32)" in human


def test_mariabackup_joiner_peer_stalls(joiner_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    """A peer that connects, sends a little and stalls: the deadline ends it cleanly."""
    write_cnf(joiner_dir, {"sst-initial-timeout": "2"})
    before = snapshot(joiner_dir / "data")
    port = free_port()
    j = start_script("py_mariabackup", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    kids = [p.pid for p in j.descendants()]
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"XBSTCK01")  # the start of an mbstream chunk, then nothing
        assert j.wait(30) == 32
    errors = error_lines(j.stderr())
    assert len(errors) == 1 and "no result after 2 s" in errors[0] and "stage 1" in errors[0]
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    assert snapshot(joiner_dir / "data") == before


def test_hostile_paths_rsync_verify_identity(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """Datadirs and certificate paths with spaces and quotes, through rsync and stunnel."""
    certdir = tmp_path / "cert dir's"
    c = lab.make_certs(str(certdir), {"joiner": "127.0.0.1", "donor": "127.0.0.1"}, owner="root")
    jbase = tmp_path / "joiner node's dir"
    dbase = tmp_path / "donor node's dir"
    shutil.copytree(joiner_dir, jbase)
    shutil.copytree(node_dir, dbase)
    write_cnf(jbase, tls_opts(c, "joiner", "VERIFY_IDENTITY"))
    write_cnf(dbase, tls_opts(c, "donor", "VERIFY_IDENTITY"))
    port = free_port()
    j = start_script("py_rsync", joiner_args(jbase, port, parent.pid))
    auth, _, address = j.readline()[6:].rpartition("@")
    d = start_script(
        "py_rsync", donor_args(dbase, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    act_as_donor_server(d, dbase / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert (jbase / "data" / "db1" / "t.ibd").read_bytes() == (
        dbase / "data" / "db1" / "t.ibd"
    ).read_bytes()


def test_hostile_paths_mariabackup_ist_tls(tmp_path: Path, parent: subprocess.Popen[bytes]) -> None:
    """The same for socat: certificate and datadir paths with spaces and quotes."""
    certdir = tmp_path / "cert dir's"
    c = lab.make_certs(str(certdir), {"j": "127.0.0.1", "d": "127.0.0.1"}, owner="root")
    bases = {n: tmp_path / f"{n} node's dir" for n in ("j", "d")}
    for n, b in bases.items():
        (b / "data").mkdir(parents=True)
        write_cnf(b, tls_opts(c, n, "VERIFY_CA"))
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(bases["j"], port, parent.pid))
    ready = js.readline()
    if not ready:
        js.wait()
        pytest.fail(f"joiner: {js.stderr()}")
    auth, _, address = ready[6:].rpartition("@")
    ds = start_script(
        "py_mariabackup",
        donor_args(bases["d"], address, bypass=True),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
    )
    first = ds.readline()
    if first != "continue":
        ds.wait()
        pytest.fail(f"donor: {ds.stderr()}")
    assert ds.readline() == f"done {UUID}:5"
    assert ds.wait() == 0, ds.stderr()
    assert js.readline() == f"{UUID}:5 0"
    assert js.wait() == 0, js.stderr()


def test_stale_files_from_a_crashed_run_do_not_block(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    jd = joiner_dir / "data"
    for name in ("wsrep_sst.pid", "rsync_sst.pid", "stunnel.pid"):
        (jd / name).write_text(f"{dead.pid}\n")
    (jd / "sst_in_progress").write_text("")
    (jd / ".sst-staging" / "half").mkdir(parents=True)
    (jd / ".sst-staging" / "half" / "x.ibd").write_bytes(b"partial")
    (jd / "rsync_sst_complete").write_text(f"{UUID}:1 0\n")  # must not be taken as new
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j.readline()[6:]
    assert "/rsync_sst_" in address
    d = start_script("py_rsync", donor_args(node_dir, address))
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"  # the new state, not the stale completion file
    assert j.wait() == 0, j.stderr()
    assert not (jd / "half").exists()
    assert_no_debris(jd)


def test_joiner_refuses_a_datadir_rsync_would_expand(
    joiner_dir: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """rsyncd.conf expands %NAME% in module paths, and no escape exists: a datadir holding
    one is refused before any port opens, never received into $HOME."""
    base = tmp_path / "node %HOME% dir"
    shutil.copytree(joiner_dir, base)
    write_cnf(base, {})
    before = snapshot(base / "data")
    port = free_port()
    j = start_script("py_rsync", joiner_args(base, port, parent.pid))
    assert j.readline() == ""
    assert j.wait(30) == 22
    errors = error_lines(j.stderr())
    assert len(errors) == 1
    assert (
        "the rsync daemon would read %HOME% in" in errors[0] and "rename the directory" in errors[0]
    )
    assert snapshot(base / "data") == before
    assert_no_debris(base / "data")
    assert not net.port_in_use(port, "127.0.0.1")
