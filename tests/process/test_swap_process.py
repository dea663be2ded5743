"""The rsync joiner's swap end to end (real rsync, our scripts, no mariadbd): a joiner killed
in its final cleanup loses nothing, and a hostile donor's names and binlog archive are kept
out of the datadir."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from sst import datadir, net, swap
from sst.tools import rsync as rs
from testsupport.process import (
    UUID,
    act_as_donor_server,
    assert_no_debris,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    snapshot,
    start_script,
    write_cnf,
)


def sst(joiner: Path, donor: Path, parent: int, env: dict[str, str] | None = None) -> str:
    """One rsync SST; returns the joiner's stderr (its exit status is the caller's)."""
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner, port, parent), env=env)
    ready = j.readline()
    assert ready.startswith("ready "), j.stderr() if j.wait() is not None else ""
    d = start_script("py_rsync", donor_args(donor, ready[6:]))
    act_as_donor_server(d, donor / "data")
    assert d.wait() == 0, d.stderr()
    j.wait()
    return j.stderr()


def data_files(d: Path) -> dict[str, bytes]:
    return {
        k: v
        for k, v in snapshot(d).items()
        if k.split("/")[0] in ("db1", "ibdata1", "ib_logfile0", "aria_log_control")
    }


def test_joiner_killed_in_final_cleanup_then_next_sst(
    node_dir: Path, joiner_dir: Path, parent: subprocess.Popen[bytes]
) -> None:
    """Finding 6: the old code left `.sst-old`; the next SST's renames failed halfway and
    its cleanup deleted `.sst-old`, which by then held live entries."""
    jd, dd = joiner_dir / "data", node_dir / "data"
    # journal, mkdir, 2 asides (db1, dropped_db), ibdata1 replaced (link, rename), 3 renames
    # in, commit: step 12 is the second of three deletions in the aside directory
    err = sst(joiner_dir, node_dir, parent.pid, env={swap.FAULT_ENV: "12"})
    assert "Traceback" not in err
    with open(jd / datadir.JOURNAL, encoding="utf-8") as f:
        assert json.load(f)["state"] == "committed"
    assert len(os.listdir(jd / datadir.OLD)) == 1  # killed halfway through the deletion
    first = data_files(dd)

    # a failed SST next (no donor comes): the data of the first one stay, whole
    write_cnf(joiner_dir, {"sst-initial-timeout": "1"})
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    assert j.readline().startswith("ready ")
    assert j.wait(30) == 32
    err = j.stderr()
    assert "Traceback" not in err
    errors = error_lines(err)
    assert len(errors) == 1 and "no donor connected within 1 s" in errors[0]
    assert "Finished an interrupted swap" in err
    assert data_files(jd) == first
    assert not (jd / "dropped_db").exists()
    assert (jd / "grastate.dat").read_text() == "joiner's own state\n"
    assert not (jd / datadir.OLD).exists() and not (jd / datadir.JOURNAL).exists()

    # and a good one joins
    write_cnf(joiner_dir, {})
    (dd / "db1" / "t.ibd").write_bytes(b"second" * 100)
    err = sst(joiner_dir, node_dir, parent.pid)
    assert "Traceback" not in err and error_lines(err) == []
    assert data_files(jd) == data_files(dd)
    assert_no_debris(jd)
    assert not (jd / datadir.JOURNAL).exists()


def hostile_push(ready: str, tree: Path) -> None:
    """What a hostile donor can do, one that saw the joiner's `ready` address (its module
    and secret): push any tree into the module, then the completion file."""
    assert ready.startswith("ready ")
    auth, _, rest = ready[len("ready ") :].partition("@")
    secret = auth.partition(":")[2]
    hostport, _, module = rest.partition("/")
    password = tree.parent / "rsync.password"
    password.write_text(secret + "\n")
    password.chmod(0o600)
    url = f"rsync://{rs.AUTH_USER}@{hostport}/{module}/"
    auth_args = [f"--password-file={password}"]
    # 23/24: the daemon may refuse some entries (symlinks); what arrives is what counts
    sent = subprocess.run(["rsync", "-rlt", *auth_args, f"{tree}/", url], check=False, timeout=60)
    assert sent.returncode in (0, 23, 24)
    magic = tree.parent / "rsync_sst_complete"
    magic.write_text(f"{UUID}:7 0\nsecret {secret}\n")
    subprocess.run(["rsync", "-t", *auth_args, str(magic), url], check=True, timeout=60)


def binlog_tar(path: Path, members: dict[str, str]) -> None:
    """name -> '' for a regular file, or a symlink's target."""
    with tarfile.open(path, "w") as tf:
        for name, target in members.items():
            info = tarfile.TarInfo(name)
            if target:
                info.type, info.linkname = tarfile.SYMTYPE, target
                tf.addfile(info)
            else:
                info.size, info.mode = 3, 0o660
                tf.addfile(info, io.BytesIO(b"bin"))


def joiner_with_binlogs(base: Path) -> None:
    (base / "my.cnf").write_text("[mysqld]\nlog-bin=mysql-bin\n[sst]\n")


def test_hostile_binlog_tar_refused_before_the_datadir_changes(
    joiner_dir: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    joiner_with_binlogs(joiner_dir)
    jd = joiner_dir / "data"
    (jd / "mysql-bin.000001").write_text("old binlog")
    (jd / "mysql-bin.index").write_text("./mysql-bin.000001\n")
    before = snapshot(jd)
    sent = tmp_path / "sent"
    (sent / "db1").mkdir(parents=True)
    (sent / "db1" / "t.ibd").write_text("new")
    binlog_tar(
        sent / "wsrep_sst_binlog.tar", {"mysql-bin.000005": "", "mysql-bin.000006": "/etc/shadow"}
    )
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    hostile_push(j.readline(), sent)
    assert j.wait(60) == 32
    errors = error_lines(j.stderr())
    assert (
        len(errors) == 1 and "binlog archive holds 'mysql-bin.000006 -> /etc/shadow'" in errors[0]
    )
    assert snapshot(jd) == before
    assert_no_debris(jd)
    assert not net.port_in_use(port, "127.0.0.1")


def test_hostile_names_are_not_swapped_in(
    joiner_dir: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    joiner_with_binlogs(joiner_dir)
    jd = joiner_dir / "data"
    (jd / "mysql-bin.000001").write_text("old binlog")
    (jd / "mysql-bin.index").write_text("./mysql-bin.000001\n/etc/hostname\n")
    etc = Path("/etc/hostname").read_bytes()
    sent = tmp_path / "sent"
    (sent / "db1").mkdir(parents=True)
    (sent / "db1" / "t.ibd").write_text("new")
    (sent / ".sst-old").mkdir()
    (sent / ".sst-old" / "ibdata1").write_text("planted")
    (sent / "sst_in_progress").write_text("planted")
    (sent / "etc").symlink_to("/etc")
    (sent / "ibdata1").write_text("new ibdata")
    binlog_tar(sent / "wsrep_sst_binlog.tar", {"mysql-bin.000005": "", "donor-bin.index": ""})
    port = free_port()
    j = start_script("py_rsync", joiner_args(joiner_dir, port, parent.pid))
    hostile_push(j.readline(), sent)
    assert j.readline() == f"{UUID}:7 0"
    assert j.wait(60) == 0
    err = j.stderr()
    assert error_lines(err) == []
    warned = [ln for ln in err.splitlines() if "Not swapped in" in ln]
    assert len(warned) == 1 and all(n in warned[0] for n in ("'.sst-old'", "'sst_in_progress'"))
    assert sorted(os.listdir(jd)) == sorted(
        [
            "db1",
            "ibdata1",
            "grastate.dat",
            "mysql-bin.000005",
            "mysql-bin.index",
            "galera_sst_status.json",
        ]
    )
    assert (jd / "db1" / "t.ibd").read_text() == "new"
    assert (jd / "mysql-bin.index").read_text() == f"{jd}/mysql-bin.000005\n"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(jd / "mysql-bin.000005").st_mode & 0o7777 == 0o660 & ~mask
    assert Path("/etc/hostname").read_bytes() == etc


def test_mariabackup_joiner_recovers_an_interrupted_swap_first(
    tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    """A mariabackup joiner killed during --move-back: its next start (here an IST) puts the
    old datadir back before anything else, and runs without a traceback."""
    j, d = tmp_path / "j", tmp_path / "d"
    for base in (j, d):
        (base / "data").mkdir(parents=True)
        write_cnf(base, {})
    jd = j / "data"
    for rel, text in {"ibdata1": "old", "db1/t.ibd": "old", "grastate.dat": "state"}.items():
        (jd / rel).parent.mkdir(parents=True, exist_ok=True)
        (jd / rel).write_text(text)
    before = snapshot(jd)
    # what a kill halfway through mariadb-backup --move-back leaves
    plan = swap.fill_plan([str(jd)], r".*grastate\.dat$")
    (jd / datadir.JOURNAL).write_text(
        json.dumps({"version": 1, "state": "swapping", "plan": plan.to_json()})
    )
    (jd / datadir.OLD).mkdir()
    for m in plan.aside:
        os.rename(m.src, m.dst)
    (jd / "ibdata1").write_text("half of the new one")
    (jd / "mysql").mkdir()
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(j, port, parent.pid))
    address = js.readline()[6:]
    ds = start_script("py_mariabackup", donor_args(d, address, bypass=True))
    assert ds.readline() == "continue"
    assert ds.wait() == 0, ds.stderr()
    assert js.readline() == f"{UUID}:5 0"
    assert js.wait() == 0
    err = js.stderr()
    assert "Rolled back an interrupted swap" in err and "Traceback" not in err
    assert error_lines(err) == []
    assert snapshot(jd) == before
    assert_no_debris(jd)
