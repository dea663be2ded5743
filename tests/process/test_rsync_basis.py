"""The joiner's basis and the kept partial transfer with real rsync (no server): a failed
transfer is kept and the next SST resumes from it; another cluster's data is not a basis."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from sst import datadir, records, resume, snapshot
from sst.tools import rsync as rs
from testsupport.process import (
    UUID,
    Script,
    act_as_donor_server,
    assert_no_debris,
    donor_args,
    free_port,
    joiner_args,
    no_processes_left,
    start_script,
    write_cnf,
)

FILES = 12  # of 256 KiB each in db2, sent at 512 KiB/s: about 6 s when throttled


@pytest.fixture
def sleeper() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stand-ins for mariadbd (a joiner's --parent), all killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _parent(procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(["sleep", "300"])
    procs.append(p)
    return p


def _donor_data(node_dir: Path) -> Path:
    dd = node_dir / "data"
    (dd / "db2").mkdir()
    for i in range(FILES):
        (dd / "db2" / f"t{i:02}.ibd").write_bytes(os.urandom(256 << 10))
    return dd


def _donor(node_dir: Path, j_ready: str) -> Script:
    auth, _, address = j_ready.rpartition("@")
    return start_script(
        "py_rsync", donor_args(node_dir, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )


def _wire_bytes(stderr: str) -> float:
    """The joiner's `Received:` line: bytes that crossed the wire."""
    m = re.search(r"Received: \d+ file\(s\) of [0-9.]+ MiB arrived, ([0-9.]+) MiB", stderr)
    assert m, stderr
    return float(m.group(1)) * 2**20


def _kill_tree(s: Script) -> None:
    kids = s.descendants()
    s.proc.kill()
    for k in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            k.kill()
    s.wait()


def _arrived(staged: Path) -> int:
    db2 = staged / "db2"
    return len([p for p in db2.iterdir() if p.name.endswith(".ibd")]) if db2.is_dir() else 0


def test_failed_transfer_is_kept_and_the_retry_resumes_from_it(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    dd = _donor_data(node_dir)
    jd = joiner_dir / "data"
    # First SST, throttled: the donor is killed when a third of db2 arrived, in its
    # pre-copy (before it asks for the read lock).
    p1 = _parent(sleeper)
    write_cnf(node_dir, {"rlimit": "512k", "backup-threads": "1"})
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, p1.pid))
    ready = j.readline()
    # No basis (the per-SST token may begin with "b": look for the tail, as a donor does).
    assert ready.startswith("ready ") and not rs.announced_basis(ready.rpartition("/")[2]), ready
    d = _donor(node_dir, ready[6:])
    staged = jd / datadir.STAGING
    deadline = time.monotonic() + 60
    while _arrived(staged) < FILES // 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _arrived(staged) >= FILES // 3
    assert (staged / rs.ORIGIN_FILE).read_text() == f"{UUID}:5\n"
    donor_pids = [d.proc.pid] + [c.pid for c in d.descendants()]
    _kill_tree(d)
    p1.kill()  # mariadbd gives up on the failed SST
    p1.wait()
    assert j.wait() != 0
    err = j.stderr()
    assert f"that arrived from {UUID}:5 in {jd / datadir.KEPT}" in err, err
    kept = resume.read(str(jd))
    assert kept is not None and kept.uuid == UUID and kept.position == f"{UUID}:5"
    assert os.stat(jd / datadir.KEPT).st_mode & 0o777 == 0o700
    assert not staged.exists() and not (jd / "db2").exists()  # nothing swapped in
    assert (jd / "db1" / "t.ibd").read_bytes() == b"old" * 100  # the old datadir as it was
    inodes = {p.name: p.stat().st_ino for p in (jd / datadir.KEPT / "db2").iterdir() if p.is_file()}
    status = subprocess.run(
        ["galera-sst", "status", "--datadir", str(jd), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(status.stdout)["kept"]["position"] == f"{UUID}:5", status
    # The retry: the joiner offers the kept data of the donor's cluster as the basis.
    p2 = _parent(sleeper)
    write_cnf(node_dir, {})
    j2 = start_script("py_rsync", joiner_args(joiner_dir, free_port(), p2.pid))
    ready = j2.readline()
    assert ready.endswith("_b" + UUID.replace("-", "")), ready
    d2 = _donor(node_dir, ready[6:])
    act_as_donor_server(d2, dd)
    assert d2.wait() == 0, d2.stderr()
    assert f"Basis rule: basis: same cluster UUID {UUID}" in d2.stderr()
    assert j2.readline() == f"{UUID}:5 0"
    assert j2.wait() == 0, j2.stderr()
    err = j2.stderr()
    assert f"Offering the partial transfer from {UUID}:5 as the basis" in err, err
    assert "Removing the kept partial transfer" in err
    # Only what was missing crossed: at most the files that had not arrived (of 256 KiB).
    wire = _wire_bytes(err)
    missing = (FILES - len(inodes)) * (256 << 10)
    assert 0 < wire <= missing + (64 << 10), (wire, missing, err)
    for p in (dd / "db2").iterdir():
        assert (jd / "db2" / p.name).read_bytes() == p.read_bytes()
    # What arrived the first time did not cross again: the same files (inodes) were kept.
    assert inodes and all((jd / "db2" / n).stat().st_ino == i for n, i in inodes.items())
    assert not (jd / datadir.KEPT).exists() and not (jd / datadir.BASIS).exists()
    assert_no_debris(jd)
    assert no_processes_left(donor_pids)


def test_another_clusters_data_is_not_a_basis(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    other = "0badc0de-0000-11ee-8000-000000000099"
    jd = joiner_dir / "data"
    (jd / "grastate.dat").write_text(f"version: 2.1\nuuid:    {other}\nseqno:   -1\n")
    before = (jd / "db1" / "t.ibd").stat().st_ino
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    assert ready.endswith("_b" + other.replace("-", "")), ready
    d = _donor(node_dir, ready[6:])
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert (
        f"Basis rule: full transfer: the joiner's data belongs to cluster {other}, "
        f"not this cluster {UUID}"
    ) in d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert "sent into the basis staging" not in j.stderr()
    got = jd / "db1" / "t.ibd"
    assert got.read_bytes() == (node_dir / "data" / "db1" / "t.ibd").read_bytes()
    assert got.stat().st_ino != before
    assert not (jd / datadir.BASIS).exists() and not (jd / datadir.KEPT).exists()


def test_kept_transfer_of_another_cluster_is_dropped_after_a_full_sst(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    """A kept transfer names its cluster: a donor of another one sends everything, and the
    joiner's successful SST removes the obsolete kept data."""
    other = "0badc0de-0000-11ee-8000-000000000099"
    jd = joiner_dir / "data"
    keep_from = jd / datadir.STAGING
    (keep_from / "db1").mkdir(parents=True)
    (keep_from / "db1" / "t.ibd").write_bytes(b"partial")
    (keep_from / rs.ORIGIN_FILE).write_text(f"{other}:9\n")
    assert resume.keep(str(jd), str(keep_from), 3600.0)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    assert ready.endswith("_b" + other.replace("-", "")), ready
    d = _donor(node_dir, ready[6:])
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert f"belongs to cluster {other}, not this cluster {UUID}" in d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert "Removing the kept partial transfer" in j.stderr()
    assert not (jd / datadir.KEPT).exists()
    got = (jd / "db1" / "t.ibd").read_bytes()
    assert got == (node_dir / "data" / "db1" / "t.ibd").read_bytes()


def test_staging_left_by_a_killed_joiner_is_kept_for_the_next(
    joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    """A joiner killed outright (SIGKILL, power cut) cannot keep its staging itself: the
    next rsync joiner keeps what our donor's origin file marks, instead of deleting it, and
    offers it as the basis."""
    jd = joiner_dir / "data"
    left = jd / datadir.STAGING
    (left / "db1").mkdir(parents=True)
    (left / "db1" / "t.ibd").write_bytes(b"arrived")
    (left / rs.ORIGIN_FILE).write_text(f"{UUID}:5\n")
    p = _parent(sleeper)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), p.pid))
    ready = j.readline()
    assert ready.endswith("_b" + UUID.replace("-", "")), ready
    assert (jd / datadir.BASIS / "db1" / "t.ibd").read_bytes() == b"arrived"
    p.kill()
    p.wait()
    assert j.wait() != 0
    err = j.stderr()
    assert f"Offering the partial transfer from {UUID}:5" in err, err
    # Nothing new arrived, so the kept transfer stays for the next attempt.
    kept = resume.read(str(jd))
    assert kept is not None and kept.position == f"{UUID}:5"
    assert (jd / datadir.KEPT / "db1" / "t.ibd").read_bytes() == b"arrived"
    assert not left.exists() and not (jd / datadir.BASIS).exists()


@pytest.mark.parametrize("order", ["parts first", "everything else first"])
def test_split_database_passes_leave_the_receiver_equal_to_the_donor(
    tmp_path: Path, order: str
) -> None:
    """A big database directory sent by parallel rsyncs (rs.database_part_passes, here one
    after the other in either order, with the basis's --checksum), then its deletion pass:
    the receiver ends equal to the donor's directory: changed, equal, new and oddly named
    files, a sub-directory, and what the donor no longer has deleted (by the deletion pass
    only)."""
    src, dst = tmp_path / "donor", tmp_path / "joiner"
    (src / "db" / "sub").mkdir(parents=True)
    (dst / "db").mkdir(parents=True)
    files = {f"t{i}.ibd": os.urandom(4096 * (i + 1)) for i in range(6)}
    files["#sql-ib7.ibd"] = b"temp" * 100
    for name, data in files.items():
        (src / "db" / name).write_bytes(data)
    (src / "db" / "odd [name].ibd").write_bytes(b"odd")  # no filter can spell it: last part
    (src / "db" / "sub" / "f").write_bytes(b"nested")
    for name in ("t0.ibd", "t1.ibd", "t2.ibd"):  # the basis: equal, changed, equal
        (dst / "db" / name).write_bytes(files[name] if name != "t1.ibd" else b"old")
    (dst / "db" / "gone.ibd").write_bytes(b"dropped on the donor")
    sizes = {n: len(d) for n, d in files.items() if rs.plain_name(n)}
    groups = rs.split_names(sizes, 3)
    assert len(groups) == 3
    push = rs.Push(str(dst), basis=True)
    parts = rs.database_part_passes("rsync", push, str(src), "db", groups)
    if order != "parts first":
        parts = parts[-1:] + parts[:-1]
    sent: list[str] = []
    for argv in [*parts, rs.deletion_pass(rs.database_pass("rsync", push, str(src), "db"))]:
        res = subprocess.run(
            [*(a for a in argv if a not in ("--owner", "--group", "--quiet")), "--out-format=%n"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        sent += [n for n in res.stdout.splitlines() if not n.endswith("/")]
    # Each file that differs crossed once, the equal ones (t0, t2) not at all, and the
    # one the donor no longer has was deleted once.
    want_sent = {*files, "odd [name].ibd", "sub/f", "deleting gone.ibd"} - {"t0.ibd", "t2.ibd"}
    assert sorted(sent) == sorted(want_sent)
    assert _tree(dst / "db") == _tree(src / "db")


def _tree(d: Path) -> dict[Path, bytes]:
    return {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def _records(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith(records.PREFIX))


def _shut_down(jd: Path, seqno: int) -> None:
    """grastate.dat as mariadbd leaves it (Galera writes seqno -1 again when it starts, so
    an SST script cannot tell a clean shutdown from a crash by it)."""
    (jd / "grastate.dat").write_text(f"version: 2.1\nuuid:    {UUID}\nseqno:   {seqno}\n")


def _joiner_record(jd: Path) -> records.Record | None:
    layout = {k: str(jd) for k in ("", *rs.SUBMODULE_FILES)}  # all in the datadir here
    return records.load(str(jd / records.JOINER), UUID, layout)[0]


def _status(datadir: Path, *args: str) -> Any:
    """`galera-sst status` of datadir: its JSON with --json, else its text."""
    res = subprocess.run(
        ["galera-sst", "status", "--datadir", str(datadir), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res
    return json.loads(res.stdout) if "--json" in args else res.stdout


def test_rejoin_skips_unread_only_what_both_records_vouch_for(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    """Two SSTs from one donor. The first leaves a record on both sides (sst/records.py);
    the second skips, unread, the files neither side changed since, and sends every other:
    one changed on the donor, one the joiner lost, one the joiner's disk changed with its
    size and mtime put back (rsync's own quick check would skip it), a new one. The joiner
    ends byte for byte equal to the donor; the skipped files are its old inodes."""
    dd = node_dir / "data"
    db2 = dd / "db2"
    db2.mkdir()
    for i in range(8):
        (db2 / f"t{i}.ibd").write_bytes(os.urandom(64 << 10))
    # Only files settled before the pre-copy (times older than t0 minus the 2 s margin:
    # sst/snapshot.py) are recorded.
    time.sleep(snapshot.MARGIN_NS / 1e9 + 0.2)
    jd = joiner_dir / "data"
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    assert f"_r{records.NONE}_" in ready and not rs.announced_basis(ready.rpartition("/")[2])
    d = _donor(node_dir, ready[6:])
    act_as_donor_server(d, dd)
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    (donor_rec,) = _records(dd)
    rid = donor_rec.removeprefix(records.PREFIX + "donor-").removesuffix(".json")
    assert _records(jd) == [records.JOINER]
    for f in (dd / donor_rec, jd / records.JOINER):
        assert os.stat(f).st_mode & 0o777 == 0o600
    joiner_rec = _joiner_record(jd)
    assert joiner_rec is not None and joiner_rec.id == rid
    # `galera-sst status` shows them.
    got = _status(jd, "--json")["records"]
    assert got == {
        "joiner": {"id": rid, "files": len(joiner_rec.files), "this_boot": True},
        "donor": [],
    }
    assert _status(dd, "--json")["records"] == {"joiner": None, "donor": [rid]}
    text = _status(jd)
    n = len(joiner_rec.files)
    assert f"record of the last SST received: {n} file(s), donor's record {rid[:8]} (used" in text
    # Between the two: mariadbd runs (grastate.dat names the cluster); each side changes
    # what it changes.
    _shut_down(jd, 5)
    (db2 / "t1.ibd").write_bytes(os.urandom(64 << 10))  # the donor's write
    (db2 / "t8.ibd").write_bytes(os.urandom(64 << 10))  # a new table
    (jd / "db2" / "t2.ibd").unlink()  # lost on the joiner
    torn = jd / "db2" / "t3.ibd"
    st = os.stat(torn)
    torn.write_bytes(os.urandom(64 << 10))
    os.utime(torn, ns=(st.st_atime_ns, st.st_mtime_ns))
    inodes = {n: (jd / "db2" / n).stat().st_ino for n in ("t0.ibd", "t4.ibd", "t7.ibd")}
    j2 = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j2.readline()
    assert ready.endswith(f"_r{rid}_" + ready.rpartition("_r")[2][33:]), ready
    assert ready.endswith("_b" + UUID.replace("-", "")), ready
    d2 = _donor(node_dir, ready[6:])
    act_as_donor_server(d2, dd)
    assert d2.wait() == 0, d2.stderr()
    assert j2.readline() == f"{UUID}:5 0"
    assert j2.wait() == 0, j2.stderr()
    derr, jerr = d2.stderr(), j2.stderr()
    # The joiner vouches for every data file it holds but the torn t3 (t2 is gone): db1's
    # and db2's seven (t0, t1, t4 to t7), ibdata1, aria_log_control.
    assert "record of its last SST vouches for 10 of its 11 data file(s)" in jerr, jerr
    # The donor skips what it did not change: db1/t.ibd, db2's t0 and t2 to t7, ibdata1
    # and aria_log_control (t2 and t3 then go whole: the joiner's basis lacks them).
    m = re.search(rf"Record {rid[:8]} of the joiner's last SST: (\d+) file\(s\)", derr)
    assert m and int(m.group(1)) == 10, derr
    for p in db2.iterdir():
        assert (jd / "db2" / p.name).read_bytes() == p.read_bytes(), p.name
    assert (jd / "db1" / "t.ibd").read_bytes() == (dd / "db1" / "t.ibd").read_bytes()
    assert all((jd / "db2" / n).stat().st_ino == i for n, i in inodes.items())
    # What crossed: t1, t2, t3 and t8 (64 KiB each), t1 and t8 once more under the lock
    # (written less than the margin before the pre-copy), small files; the line's 0.1 MiB
    # rounding aside. Everything would be some 0.7 MiB.
    wire = _wire_bytes(jerr)
    assert 0.2 * 2**20 <= wire <= 0.45 * 2**20, (wire, jerr)
    # Both sides' records are of this SST now.
    new_rec = _joiner_record(jd)
    assert new_rec is not None and new_rec.id != rid
    assert os.path.basename(records.donor_path("", new_rec.id)) in _records(dd)
    assert_no_debris(jd)


def test_a_record_that_cannot_be_kept_costs_only_speed(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    """Where the joiner's record should go stands a directory: the SST succeeds, says in
    one WARNING line that the next rejoin reads every file, and the directory is left."""
    jd = joiner_dir / "data"
    (jd / records.JOINER).mkdir()
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    assert f"_r{records.NONE}_" in ready, ready  # the directory is no record
    d = _donor(node_dir, ready[6:])
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    warned = [ln for ln in j.stderr().splitlines() if "could not keep the record" in ln]
    assert len(warned) == 1 and "the next rejoin reads every file" in warned[0], j.stderr()
    assert (jd / records.JOINER).is_dir()
    assert (jd / "db1" / "t.ibd").read_bytes() == (node_dir / "data" / "db1" / "t.ibd").read_bytes()
    assert_no_debris(jd)


def _two_tables_then_first_sst(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> str:
    """db2 with six settled tables on the donor, a first SST that leaves both records, the
    joiner's grastate.dat as its server leaves it; the record's id."""
    db2 = node_dir / "data" / "db2"
    db2.mkdir()
    for i in range(6):
        (db2 / f"t{i}.ibd").write_bytes(os.urandom(64 << 10))
    time.sleep(snapshot.MARGIN_NS / 1e9 + 0.2)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    d = _donor(node_dir, j.readline()[6:])
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    rec = _joiner_record(joiner_dir / "data")
    assert rec is not None
    _shut_down(joiner_dir / "data", 5)
    return rec.id


def test_without_records_a_file_damaged_in_place_is_replaced(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]]
) -> None:
    """What the records give up, and the way back: a joiner file whose bytes a disk changed
    with no change to its stat would be skipped; with `rsync-records=0` on the joiner every
    old file is compared by checksum, and the damaged one replaced."""
    _two_tables_then_first_sst(node_dir, joiner_dir, sleeper)
    jd = joiner_dir / "data"
    write_cnf(joiner_dir, {"rsync-records": "0"})
    bad = jd / "db2" / "t4.ibd"
    st = os.stat(bad)
    with open(bad, "r+b") as f:
        f.write(b"\0" * 4096)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    assert "_r" not in ready.rpartition("/")[2].removeprefix("rsync_sst"), ready
    d = _donor(node_dir, ready[6:])
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert "of the joiner's last SST:" not in d.stderr()
    assert "Kept a record" not in d.stderr() + j.stderr()
    for p in (node_dir / "data" / "db2").iterdir():
        assert (jd / "db2" / p.name).read_bytes() == p.read_bytes(), p.name


def test_a_table_dropped_during_a_recorded_precopy_is_no_failure(
    node_dir: Path, joiner_dir: Path, sleeper: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A skipped table the joiner lacks, dropped on the donor just before the pass that
    sends it (an rsync wrapper on the donor's PATH removes it): rsync would exit 23 for
    the missing name; --ignore-missing-args makes it no failure, and the deletion pass
    removes the joiner's copy of another dropped one."""
    _two_tables_then_first_sst(node_dir, joiner_dir, sleeper)
    jd, db2 = joiner_dir / "data", node_dir / "data" / "db2"
    (jd / "db2" / "t1.ibd").unlink()  # lost on the joiner: in the "missing" list
    (db2 / "t2.ibd").unlink()  # dropped on the donor before this SST
    wrap = tmp_path / "wrap"
    wrap.mkdir()
    real = shutil.which("rsync")
    (wrap / "rsync").write_text(
        "#!/bin/sh\n"
        'case "$*" in *--ignore-existing*--files-from=*missing-*) '
        f"rm -f {db2 / 't1.ibd'} ;; esac\n"
        f'exec {real} "$@"\n'
    )
    (wrap / "rsync").chmod(0o755)
    j = start_script("py_rsync", joiner_args(joiner_dir, free_port(), _parent(sleeper).pid))
    ready = j.readline()
    auth, _, address = ready[6:].rpartition("@")
    d = start_script(
        "py_rsync",
        donor_args(node_dir, address),
        env={"WSREP_SST_OPT_REMOTE_AUTH": auth},
        path_prefix=str(wrap),
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    # Skipped: db1/t.ibd, db2's t0, t1, t3 to t5, ibdata1 and aria_log_control.
    assert "of the joiner's last SST: 8 file(s)" in d.stderr(), d.stderr()
    assert not (db2 / "t1.ibd").exists()  # the wrapper did drop it
    assert sorted(p.name for p in (jd / "db2").iterdir()) == sorted(p.name for p in db2.iterdir())
    for p in db2.iterdir():
        assert (jd / "db2" / p.name).read_bytes() == p.read_bytes(), p.name
