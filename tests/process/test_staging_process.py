"""The rsync joiner in place ([sst] staging=in-place, sst/staging.py) end to end without
mariadbd: the data arrives in the live datadir, the redo log last; an IST keeps the old
datadir as it was; a SIGKILLed in-place SST leaves debris no server takes for data (no redo
log, grastate.dat invalid, `sst_in_progress` saying in-place), and the next SST replaces it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

from sst import datadir, net, status
from testsupport.process import (
    UUID,
    act_as_donor_server,
    assert_no_debris,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    no_processes_left,
    snapshot,
    start_script,
    write_cnf,
)

ZERO = "uuid:    00000000-0000-0000-0000-000000000000"


def _old_redo(joiner_dir: Path) -> None:
    (joiner_dir / "data" / "ib_logfile0").write_bytes(b"old-redo")


def _grastate(d: Path) -> str:
    return (d / "grastate.dat").read_text()


def test_in_place_sst_replaces_data_redo_log_last(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    write_cnf(joiner_dir, {"staging": "in-place"})
    _old_redo(joiner_dir)
    jd, dd = joiner_dir / "data", node_dir / "data"
    # The server's own socket in its datadir is older than the SST: not a foreign entry.
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(jd / "mysqld.sock"))
    time.sleep(1.1)
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j.readline()[6:]
    # before the first byte: invalid state, the in-place mark, no redo log in the datadir
    assert ZERO in _grastate(jd) and "safe_to_bootstrap: 0" in _grastate(jd)
    assert (jd / datadir.IN_PROGRESS).read_text() == "in-place\n"
    assert not (jd / "ib_logfile0").exists()
    assert (jd / datadir.STAGING / "ib_logfile0").read_bytes() == b"old-redo"
    d = start_script("py_rsync", donor_args(node_dir, address), env={})
    act_as_donor_server(d, dd)
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    sock.close()
    assert (jd / "db1" / "t.ibd").read_bytes() == (dd / "db1" / "t.ibd").read_bytes()
    assert (jd / "ibdata1").read_bytes() == (dd / "ibdata1").read_bytes()
    assert (jd / "ib_logfile0").read_bytes() == (dd / "ib_logfile0").read_bytes()
    assert not (jd / "dropped_db").exists()
    assert (jd / "mysqld.sock").exists()
    assert not (jd / datadir.STAGING).exists()
    assert ZERO in _grastate(jd)  # mariadbd writes the new state once it has joined
    assert_no_debris(jd)
    st = json.loads((jd / status.FILE).read_text())
    assert st["state"] == "succeeded" and st["staging"].startswith("in-place: staging=in-place")
    err = j.stderr()
    assert error_lines(err) == []
    warnings = [ln for ln in err.splitlines() if "WARNING" in ln and "in place" in ln]
    assert len(warnings) == 1 and "staging=in-place" in warnings[0], err
    assert not net.port_in_use(port, "127.0.0.1")


def test_in_place_ist_keeps_the_old_datadir(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    write_cnf(joiner_dir, {"staging": "in-place"})
    _old_redo(joiner_dir)
    before = snapshot(joiner_dir / "data")
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), parent.pid))
    address = j.readline()[6:]
    d = start_script("py_rsync", donor_args(node_dir, address, bypass=True))
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert snapshot(joiner_dir / "data") == before  # grastate.dat and the redo log back
    assert "IST requested by the donor" in j.stderr()


def test_killed_in_place_sst_leaves_unmistakable_debris_next_sst_replaces_it(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    write_cnf(joiner_dir, {"staging": "in-place"})
    write_cnf(node_dir, {"rlimit": "512k"})
    _old_redo(joiner_dir)
    jd, dd = joiner_dir / "data", node_dir / "data"
    (dd / "db1" / "big.ibd").write_bytes(os.urandom(6 << 20))  # about 12 s at 512 KiB/s
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j.readline()[6:]
    d = start_script("py_rsync", donor_args(node_dir, address))
    assert d.readline() == "flush tables"
    (dd / "tables_flushed.tmp").write_text(f"{UUID}:5 0\n")
    (dd / "tables_flushed.tmp").rename(dd / "tables_flushed")
    deadline = time.monotonic() + 30
    held = jd / datadir.STAGING / "ib_logfile0"
    while time.monotonic() < deadline:  # the InnoDB files are in, the database is arriving
        if (
            (jd / "ibdata1").read_bytes() == (dd / "ibdata1").read_bytes()
            and held.exists()
            and held.read_bytes() == (dd / "ib_logfile0").read_bytes()
            and any(n.startswith(".big.ibd") for n in os.listdir(jd / "db1"))
        ):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"no partial transfer seen: {sorted(os.listdir(jd))}")
    kids = [p.pid for p in j.descendants()]
    j.proc.kill()
    j.wait()
    assert d.wait(60) != 0
    assert no_processes_left(kids)
    assert not net.port_in_use(port, "127.0.0.1")
    # The debris: half the donor's files, and nothing a server takes for data.
    assert (jd / datadir.IN_PROGRESS).read_text() == "in-place\n"
    assert ZERO in _grastate(jd) and "safe_to_bootstrap: 0" in _grastate(jd)
    assert not (jd / "ib_logfile0").exists()  # InnoDB refuses to start without it

    # The next SST (default staging=auto) replaces the debris and names it.
    write_cnf(joiner_dir, {})
    write_cnf(node_dir, {})
    j2 = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j2.readline()[6:]
    d2 = start_script("py_rsync", donor_args(node_dir, address))
    act_as_donor_server(d2, dd)
    assert d2.wait() == 0, d2.stderr()
    assert j2.readline() == f"{UUID}:5 0"
    assert j2.wait() == 0, j2.stderr()
    for rel in ("db1/t.ibd", "db1/big.ibd", "ibdata1", "ib_logfile0"):
        assert (jd / rel).read_bytes() == (dd / rel).read_bytes(), rel
    assert not (jd / datadir.STAGING).exists()
    assert_no_debris(jd)
    assert "holds the debris of an in-place SST that did not finish" in j2.stderr()


def test_in_place_foreign_entries_removed_and_sst_refused(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    """In place there is no staging to refuse before a swap: what arrived as a FIFO (our
    donor sends specials, as stock's flags do) is removed and the SST fails, leaving the
    in-place debris, never a datadir a server takes for data."""
    write_cnf(joiner_dir, {"staging": "in-place"})
    _old_redo(joiner_dir)
    jd, dd = joiner_dir / "data", node_dir / "data"
    os.mkfifo(dd / "db1" / "fifo")
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    address = j.readline()[6:]
    kids = [p.pid for p in j.descendants()]
    d = start_script("py_rsync", donor_args(node_dir, address))
    act_as_donor_server(d, dd)
    assert d.wait() == 0, d.stderr()
    assert j.readline() == ""  # no coordinates
    assert j.wait() == 32
    errors = error_lines(j.stderr())
    assert len(errors) == 1, errors
    assert "device(s), FIFO(s), socket(s) or set-id file(s) arrived" in errors[0]
    assert "db1/fifo" in errors[0] and "removed" in errors[0]
    assert not os.path.lexists(jd / "db1" / "fifo")
    assert (jd / datadir.IN_PROGRESS).read_text() == "in-place\n"
    assert ZERO in _grastate(jd)
    assert not (jd / "ib_logfile0").exists() and not (jd / datadir.STAGING).exists()
    assert no_processes_left(kids) and not net.port_in_use(port, "127.0.0.1")
