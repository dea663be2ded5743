"""The rsync joiner's daemon against a third party on the SST port (docs/tls.md 2, rsync daemon):
modules nobody can name or list, write only, rsync authentication between our peers,
transfers as the datadir's owner, and no device, special or set-id file in the datadir.
The joiner runs as root without mariadbd; the attacker is a real rsync client."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from sst import net
from sst.request import NO_NAME
from testsupport import lab
from testsupport.process import (
    UUID,
    Script,
    act_as_donor_server,
    assert_no_debris,
    certs_for,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    no_processes_left,
    snapshot,
    start_script,
    tls_opts,
    write_cnf,
)


@pytest.fixture
def mysql_joiner() -> Iterator[Path]:
    """A joiner whose datadir belongs to mysql, under directories mysql can traverse."""
    base = Path(tempfile.mkdtemp(prefix="gsst-guard.", dir="/tmp"))
    base.chmod(0o755)
    d = base / "data"
    (d / "db1").mkdir(parents=True)
    (d / "db1" / "t.ibd").write_bytes(b"old" * 100)
    (d / "grastate.dat").write_text("joiner's own state\n")
    lab.chown_tree(str(d), "mysql")
    write_cnf(base, {})
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    """What the attacker pushes: /dev/mem's numbers (mode 666), a setuid-root file, and a
    file big enough to keep a rate-limited connection open for a while."""
    src = tmp_path / "evil"
    src.mkdir()
    os.mknod(src / "mem", 0o666 | stat.S_IFCHR, os.makedev(1, 1))
    os.chmod(src / "mem", 0o666)
    (src / "suid").write_bytes(b"#!/bin/sh\nid\n")
    os.chown(src / "suid", 0, 0)
    os.chmod(src / "suid", 0o4755)
    (src / "big").write_bytes(os.urandom(300_000))
    return src


def ready_parts(j: Script) -> tuple[str, str, str, str]:
    """cn, secret, host:port, module from the joiner's `ready` line."""
    line = j.readline()
    m = re.fullmatch(
        r"ready ([^:@]*):([0-9a-f]{32})@([0-9.]+:\d+)/"
        r"(rsync_sst_(?:r[0-9a-f]{32}_)?[0-9a-f]{32}(?:_b[0-9a-f]{32})?)",
        line,
    )
    assert m, line
    return m.group(1), m.group(2), m.group(3), m.group(4)


def rsync_client(*args: str) -> subprocess.CompletedProcess[str]:
    """A third party's rsync, with no password in its environment and nothing on stdin."""
    env = {k: v for k, v in os.environ.items() if k != "RSYNC_PASSWORD"}
    return subprocess.run(
        ["rsync", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def password_file(d: Path, name: str, secret: str) -> str:
    p = d / name
    p.write_text(secret + "\n")
    p.chmod(0o600)
    return str(p)


def connection_ids(listener: psutil.Process, timeout: float = 20) -> dict[str, set[int]]:
    """The uids, gids and supplementary groups of the daemon's per-connection processes, as
    /proc/<pid>/status shows them, once a connection is receiving (receiver and generator,
    two processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = listener.children(recursive=True)
        if len(kids) >= 2:
            ids: dict[str, set[int]] = {"Uid": set(), "Gid": set(), "Groups": set()}
            for p in kids:
                for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    key, _, values = ln.partition(":")
                    if key in ids:
                        ids[key].update(int(v) for v in values.split())
            return ids
        time.sleep(0.02)
    raise AssertionError("no connection to the daemon seen")


def no_device_or_setid(root: Path) -> list[str]:
    """Entries under root that are devices, or carry a set-user/group-id bit."""
    bad = []
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            mode = os.lstat(os.path.join(dirpath, n)).st_mode
            device = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            setid = stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID)
            if device or setid:
                bad.append(n)
    return bad


def test_root_joiner_third_party_refused_and_transfers_run_as_mysql(
    node_dir: Path,
    mysql_joiner: Path,
    evil: Path,
    parent: subprocess.Popen[bytes],
    tmp_path: Path,
) -> None:
    mysql = pwd.getpwnam("mysql")
    jd = mysql_joiner / "data"
    port = free_port()
    j = start_script("py_rsync", joiner_args(mysql_joiner, port, parent.pid))
    cn, secret, hostport, module = ready_parts(j)
    assert cn == NO_NAME  # no certificate outside the VERIFY modes: no name (MariaDB 11)
    listener = psutil.Process(j.proc.pid).children()[0]
    right = password_file(tmp_path, "right", secret)
    wrong = password_file(tmp_path, "wrong", "0" * 32)
    url = f"rsync://sst@{hostport}/{module}/"

    # Without the password, with a wrong one, to the stock module name: all refused.
    no_pw = rsync_client("--dirs", f"{evil}/", f"rsync://{hostport}/{module}/")
    assert no_pw.returncode == 5 and "auth failed" in no_pw.stderr
    bad_pw = rsync_client(f"--password-file={wrong}", "--dirs", f"{evil}/", url)
    assert bad_pw.returncode == 5 and "auth failed" in bad_pw.stderr
    guessed = rsync_client(
        f"--password-file={right}", "--dirs", f"{evil}/", f"rsync://sst@{hostport}/rsync_sst/"
    )
    assert guessed.returncode == 5 and "Unknown module 'rsync_sst'" in guessed.stderr
    # The module list is empty, and the module cannot be read, even with the password.
    listing = rsync_client(f"rsync://{hostport}/")
    assert listing.stdout.strip() == "" and "rsync_sst" not in listing.stderr
    out = tmp_path / "read"
    read = rsync_client(f"--password-file={right}", "-r", url, f"{out}/")
    assert read.returncode != 0 and "write only" in read.stderr
    assert not out.exists() or not any(out.iterdir())

    # With the password (someone who saw the address): the transfer runs as mysql, no
    # device node is made and the setuid bit is gone.
    push = subprocess.Popen(
        ["rsync", f"--password-file={right}", "-a", "--bwlimit=100", f"{evil}/", url],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ids = connection_ids(listener)
    assert ids["Uid"] == {mysql.pw_uid} and ids["Gid"] == {mysql.pw_gid}
    assert 0 not in ids["Groups"]
    push.communicate(timeout=60)
    staged = jd / ".sst-staging"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o700
    assert not (staged / "mem").exists()
    assert (staged / "suid").stat().st_uid == mysql.pw_uid
    assert no_device_or_setid(staged) == []

    # The real donor, which knows the secret, still completes.
    d = start_script(
        "py_rsync",
        donor_args(node_dir, f"{hostport}/{module}"),
        env={"WSREP_SST_OPT_REMOTE_AUTH": f":{secret}"},
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    assert (jd / "db1" / "t.ibd").read_bytes() == (node_dir / "data" / "db1" / "t.ibd").read_bytes()
    assert no_device_or_setid(jd) == []
    assert (jd / "db1" / "t.ibd").stat().st_uid == mysql.pw_uid
    assert secret not in j.stderr() and secret not in d.stderr()
    assert_no_debris(jd)
    assert not net.port_in_use(port, "127.0.0.1")
    assert no_processes_left([listener.pid])


def test_root_datadir_special_files_refused_before_the_swap(
    node_dir: Path, evil: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A datadir of root's keeps a root daemon, which can make a device node: the joiner
    then refuses the whole transfer before anything in the datadir changes."""
    base = tmp_path / "joiner"
    (base / "data" / "db1").mkdir(parents=True)
    (base / "data" / "db1" / "t.ibd").write_bytes(b"old")
    write_cnf(base, {})
    before = snapshot(base / "data")
    os.mkfifo(evil / "fifo")
    port = free_port()
    j = start_script("py_rsync", joiner_args(base, port, parent.pid))
    _, secret, hostport, module = ready_parts(j)
    kids = [p.pid for p in j.descendants()]
    right = password_file(tmp_path, "right", secret)
    pushed = rsync_client(
        f"--password-file={right}", "-a", f"{evil}/", f"rsync://sst@{hostport}/{module}/"
    )
    assert pushed.returncode == 0, pushed.stderr
    d = start_script(
        "py_rsync",
        donor_args(node_dir, f"{hostport}/{module}"),
        env={"WSREP_SST_OPT_REMOTE_AUTH": f":{secret}"},
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == ""  # no coordinates
    assert j.wait() == 32
    errors = error_lines(j.stderr())
    assert len(errors) == 1 and "arrived as a device, FIFO, socket or set-id file" in errors[0]
    assert snapshot(base / "data") == before
    assert no_device_or_setid(base / "data") == []
    assert_no_debris(base / "data")
    assert no_processes_left(kids) and not net.port_in_use(port, "127.0.0.1")


def test_rsync_wan_staging_is_private_and_unreadable(
    node_dir: Path, mysql_joiner: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """The basis staging holds hard links to the current datadir: nobody reads them through
    the daemon, not even with the password, and both stagings are 0700."""
    (mysql_joiner / "data" / "grastate.dat").write_text(f"uuid: {UUID}\nseqno: -1\n")
    port = free_port()
    j = start_script("py_rsync_wan", joiner_args(mysql_joiner, port, parent.pid))
    _, secret, hostport, module = ready_parts(j)
    staged = mysql_joiner / "data" / ".sst-basis"
    for root in (staged, mysql_joiner / "data" / ".sst-staging"):
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (staged / "db1" / "t.ibd").stat().st_ino == (
        mysql_joiner / "data" / "db1" / "t.ibd"
    ).stat().st_ino
    right = password_file(tmp_path, "right", secret)
    out = tmp_path / "read"
    for mod in (module, module + ".basis"):
        for what in ("", "db1/t.ibd", "grastate.dat"):
            read = rsync_client(
                f"--password-file={right}", "-r", f"rsync://sst@{hostport}/{mod}/{what}", f"{out}/"
            )
            assert read.returncode != 0 and "module is write only" in read.stderr
    assert not out.exists() or not any(out.iterdir())
    d = start_script(
        "py_rsync_wan",
        donor_args(node_dir, f"{hostport}/{module}"),
        env={"WSREP_SST_OPT_REMOTE_AUTH": f":{secret}"},
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    jd = mysql_joiner / "data"
    assert (jd / "db1" / "t.ibd").read_bytes() == (node_dir / "data" / "db1" / "t.ibd").read_bytes()
    assert_no_debris(jd)


def test_root_joiner_through_stunnel_writes_as_the_datadirs_owner(
    node_dir: Path, mysql_joiner: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """Behind stunnel (run as root) each connection's rsync still drops to mysql: the root
    donor's files arrive owned by mysql, and the module demanded the donor's password."""
    c = certs_for(tmp_path)
    write_cnf(mysql_joiner, tls_opts(c, "joiner", "VERIFY_CA"))
    write_cnf(node_dir, tls_opts(c, "donor", "VERIFY_CA"))
    port = free_port()
    j = start_script("py_rsync", joiner_args(mysql_joiner, port, parent.pid))
    cn, secret, hostport, module = ready_parts(j)
    kids = [p.pid for p in j.descendants()]
    d = start_script(
        "py_rsync",
        donor_args(node_dir, f"{hostport}/{module}"),
        env={"WSREP_SST_OPT_REMOTE_AUTH": f"{cn}:{secret}"},
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0"
    assert j.wait() == 0, j.stderr()
    jd = mysql_joiner / "data"
    assert (node_dir / "data" / "db1" / "t.ibd").stat().st_uid == 0
    mysql = pwd.getpwnam("mysql")
    for p in (jd / "db1", jd / "db1" / "t.ibd", jd / "ibdata1", jd / "ib_logfile0"):
        assert (p.stat().st_uid, p.stat().st_gid) == (mysql.pw_uid, mysql.pw_gid), p
    assert no_processes_left(kids) and not net.port_in_use(port, "127.0.0.1")
    assert_no_debris(jd)
