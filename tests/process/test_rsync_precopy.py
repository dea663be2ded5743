"""The rsync donor's pre-copy against real rsync daemons, no mariadbd (docs/contract.md 6.2,
"Pre-copy"): the datadir is copied before `flush tables`; what changes between the pre-copy
and the lock (a same-size rewrite whose mtime was set back, a deleted file, new files, a new
database) arrives under the lock, into our staged joiner and into an in-place rsync daemon
as the stock joiner runs one; files unchanged since before the pre-copy are not sent again."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sst.tools import rsync as rs
from testsupport.process import (
    UUID,
    Script,
    assert_no_debris,
    donor_args,
    error_lines,
    fake_tool,
    free_port,
    joiner_args,
    no_processes_left,
    start_script,
    tables_flushed,
    write_cnf,
)

OLD_FILES = {
    "db1/keep.ibd": b"k" * 8192,
    "db1/gone.ibd": b"g" * 4096,
    "other/o.ibd": b"o" * 4096,
}


def seed(dd: Path, pause: float = 2.2) -> None:
    """More of a datadir than node_dir's (a database directory that is a symlink to one
    outside it among them), then a pause: everything in it is older than the pre-copy's t0
    minus the margin, so only what the test changes later counts as changed."""
    (dd / "other").mkdir()
    for rel, data in OLD_FILES.items():
        (dd / rel).write_bytes(data)
    outside = dd.parent / "elsewhere" / "linked"
    outside.mkdir(parents=True)
    (outside / "l.ibd").write_bytes(b"l" * 2048)
    os.symlink(outside, dd / "linked")
    time.sleep(pause)


def change_under_lock(dd: Path) -> None:
    """What the server does between the pre-copy and the lock: t.ibd rewritten with the same
    size and its mtime set back (only its ctime tells), the redo log written, a file
    dropped, an InnoDB intermediate table (`#sql-...`) and a whole
    database created."""
    t = dd / "db1" / "t.ibd"
    st = t.stat()
    t.write_bytes(b"N" * st.st_size)
    os.utime(t, ns=(st.st_atime_ns, st.st_mtime_ns))
    (dd / "ib_logfile0").write_bytes(b"R" * 100)
    (dd / "db1" / "gone.ibd").unlink()
    (dd / "db1" / "#sql-ib42.ibd").write_bytes(b"temp")
    (dd / "newdb").mkdir()
    (dd / "newdb" / "n.ibd").write_bytes(b"n" * 1000)


def serve_with_changes(donor: Script, dd: Path) -> None:
    """Answer the donor as mariadbd would, changing the datadir when `flush tables` comes
    (the pre-copy is done by then)."""
    assert donor.readline(timeout=60) == "flush tables"
    change_under_lock(dd)
    tables_flushed(dd)
    assert donor.readline() == "continue"
    assert donor.readline() == f"done {UUID}:5 0"


def assert_carried(dd: Path, jd: Path) -> None:
    """The joiner holds the donor's files as they were under the lock."""
    for rel in ("db1/t.ibd", "db1/keep.ibd", "db1/#sql-ib42.ibd", "newdb/n.ibd", "other/o.ibd"):
        assert (jd / rel).read_bytes() == (dd / rel).read_bytes(), rel
    assert (jd / "linked" / "l.ibd").read_bytes() == b"l" * 2048  # a directory there
    assert (jd / "db1" / "t.ibd").read_bytes().startswith(b"NNNN")
    assert (jd / "ib_logfile0").read_bytes() == b"R" * 100
    assert (jd / "ibdata1").read_bytes() == (dd / "ibdata1").read_bytes()
    assert not (jd / "db1" / "gone.ibd").exists()
    assert not (jd / "dropped_db").exists()


def resent(log: str) -> tuple[int, str]:
    """The donor's INFO line: how many files were sent again under the lock, and it."""
    m = re.search(r"Read lock held [0-9.]+ s: sent again under it (\d+) changed file\(s\)", log)
    assert m, log
    return int(m.group(1)), m.group(0)


def test_changes_after_the_precopy_reach_our_staged_joiner(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    dd, jd = node_dir / "data", joiner_dir / "data"
    seed(dd)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), parent.pid))
    auth, _, address = j.readline()[6:].rpartition("@")
    d = start_script(
        "py_rsync", donor_args(node_dir, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    serve_with_changes(d, dd)
    assert d.wait() == 0
    log = d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert_carried(dd, jd)
    # The redo log (always), t.ibd, the temporary table and the new database's file; not
    # keep.ibd, o.ibd, ibdata1 or aria_log_control, unchanged since before t0.
    assert resent(log)[0] == 4
    assert "Pre-copy without the read lock done in" in log
    assert error_lines(log) == []
    assert_no_debris(dd)
    assert_no_debris(jd)


def test_the_precopy_leaves_the_redo_log_to_the_lock(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    # On a LAN every redo log file is sent whole under the lock: the pre-copy carries the
    # other files, not it (one crossing of the wire and the joiner's disk, not two).
    dd, jd = node_dir / "data", joiner_dir / "data"
    seed(dd, pause=0)
    (dd / "ib_logfile0").write_bytes(b"L" * 5000)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), parent.pid))
    auth, _, address = j.readline()[6:].rpartition("@")
    d = start_script(
        "py_rsync", donor_args(node_dir, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    assert d.readline(timeout=60) == "flush tables"
    arrived = {p.name for p in jd.rglob("*") if p.is_file()}
    assert "keep.ibd" in arrived and "ibdata1" in arrived, arrived
    assert "ib_logfile0" not in arrived, arrived
    tables_flushed(dd)
    assert d.readline() == "continue"
    assert d.readline() == f"done {UUID}:5 0"
    assert d.wait() == 0
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert (jd / "ib_logfile0").read_bytes() == b"L" * 5000
    assert error_lines(d.stderr()) == []
    assert_no_debris(jd)


@pytest.fixture
def in_place_daemon(joiner_dir: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """An rsync daemon as the stock joiner runs it: the five modules on the live datadir
    (no staging, no users); yields its address and a stop function (by its PID)."""
    jd = joiner_dir / "data"
    port = free_port()
    modules = [(rs.DEFAULT_MODULE, str(jd))]
    modules += [(f"{rs.DEFAULT_MODULE}-{sub}", str(jd)) for sub in rs.SUBMODULES]
    conf = joiner_dir / "rsyncd.conf"
    conf.write_text(
        rs.daemon_conf(rs.Daemon(str(joiner_dir / "rsyncd.pid"), modules, timeout=60, owner=(0, 0)))
    )
    proc = subprocess.Popen(
        rs.daemon_argv("rsync", str(conf), port, "127.0.0.1"),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            subprocess.run(
                ["rsync", f"rsync://127.0.0.1:{port}/"], capture_output=True, timeout=5, check=True
            )
            break
        except subprocess.CalledProcessError:
            time.sleep(0.1)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    yield f"127.0.0.1:{port}/{rs.DEFAULT_MODULE}", stop
    if proc.poll() is None:
        stop()
    assert no_processes_left([proc.pid])


def test_changes_after_the_precopy_reach_an_in_place_daemon_as_stock_runs(
    node_dir: Path, joiner_dir: Path, in_place_daemon: tuple[str, Callable[[], None]]
) -> None:
    """Our donor under the stock name feeding a stock joiner's daemon, which writes into the
    live datadir (with the joiner's old files in it) in every session it is sent."""
    dd, jd = node_dir / "data", joiner_dir / "data"
    seed(dd)
    (jd / "db1" / "gone.ibd").write_bytes(b"the joiner's own old copy")
    address, stop = in_place_daemon
    d = start_script("rsync", donor_args(node_dir, address))
    serve_with_changes(d, dd)
    assert d.wait() == 0
    log = d.stderr()
    stop()
    assert (jd / rs.MAGIC_FILE).read_text().splitlines()[0] == f"{UUID}:5 0"
    assert_carried(dd, jd)
    assert resent(log)[0] == 4
    assert error_lines(log) == []


def test_without_precopy_everything_is_copied_under_the_lock(
    node_dir: Path, joiner_dir: Path, in_place_daemon: tuple[str, Callable[[], None]]
) -> None:
    dd, jd = node_dir / "data", joiner_dir / "data"
    seed(dd, pause=0)
    (jd / "db1" / "gone.ibd").write_bytes(b"the joiner's own old copy")
    write_cnf(node_dir, {"rsync-precopy": "off"})
    address, stop = in_place_daemon
    d = start_script("rsync", donor_args(node_dir, address))
    serve_with_changes(d, dd)
    assert d.wait() == 0
    log = d.stderr()
    stop()
    assert_carried(dd, jd)
    assert "Pre-copy" not in log
    assert re.search(r"Read lock held [0-9.]+ s, for the whole copy \(rsync-precopy=0\)", log)


# A real rsync whose full passes (not the lists sent under the lock, their deletion passes
# or the completion file) end as if a source file had vanished.
VANISHING_RSYNC = r"""
/usr/bin/rsync "$@" || exit $?
case " $* " in *--files-from=*|*--ignore-existing*|*--checksum*|*/.sst-origin\ *) exit 0 ;; esac
echo 'file has vanished: "/x/db1/#sql-gone.ibd"' >&2
exit 24
"""


def _pair_with_fake_rsync(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes], fakebin: Path
) -> tuple[Script, Script]:
    """Our joiner, and our donor with fakebin's rsync first on its PATH."""
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), parent.pid))
    auth, _, address = j.readline()[6:].rpartition("@")
    d = start_script(
        "py_rsync",
        donor_args(node_dir, address),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
        path_prefix=str(fakebin),
    )
    return j, d


def test_a_file_vanishing_during_the_precopy_is_no_failure(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes], fakebin: Path
) -> None:
    fake_tool(fakebin, "rsync", VANISHING_RSYNC)
    dd = node_dir / "data"
    seed(dd, pause=0)
    j, d = _pair_with_fake_rsync(node_dir, joiner_dir, parent, fakebin)
    serve_with_changes(d, dd)
    assert d.wait() == 0
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0
    assert_carried(dd, joiner_dir / "data")


def test_a_file_vanishing_under_the_lock_fails_as_with_stock(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes], fakebin: Path
) -> None:
    fake_tool(fakebin, "rsync", VANISHING_RSYNC)
    write_cnf(node_dir, {"rsync-precopy": "0"})
    j, d = _pair_with_fake_rsync(node_dir, joiner_dir, parent, fakebin)
    assert d.readline() == "flush tables"
    (node_dir / "data" / "tables_flushed").write_text(f"{UUID}:5 0\n")
    assert d.wait() == 255
    errors = error_lines(d.stderr())
    assert len(errors) == 1 and "rsync exited with 24" in errors[0], errors
    assert d.readline() == ""  # no `continue`: mariadbd unlocks when the script ends
    parent.kill()
    assert j.wait() == 32
    assert_no_debris(node_dir / "data")


def test_a_failed_precopy_fails_before_the_lock(node_dir: Path, fakebin: Path) -> None:
    """Anything but a vanished file (23: a file that could not be read or written) fails
    the SST in the pre-copy: the server is never locked, nothing is left running."""
    pidlog = fakebin / "pids"
    fake_tool(
        fakebin,
        "rsync",
        f"sleep 60 & echo $! >> {pidlog}\n"
        'echo \'rsync: [sender] send_files failed to open "/x/db1/t.ibd": Permission denied'
        " (13)' >&2; exit 23",
    )
    d = start_script(
        "py_rsync", donor_args(node_dir, "127.0.0.1:9/rsync_sst"), path_prefix=str(fakebin)
    )
    assert d.readline() == ""  # never `flush tables`
    assert d.wait() == 255
    errors = error_lines(d.stderr())
    assert len(errors) == 1 and "Permission denied" in errors[0], errors
    assert "during sending the datadir's top level" in errors[0]
    assert_no_debris(node_dir / "data")
    orphans = [int(x) for x in pidlog.read_text().split()]
    assert orphans and no_processes_left(orphans)
