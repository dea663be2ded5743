"""Hostile local users and broken environments (issue findings 5, 7-10): planted symlinks,
other users' directories, malformed status files, a dead mariadbd during the listener's
start, odd tmpdirs. Real scripts, real rsync/socat; exactly one ERROR line each time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sst import status
from sst.errors import ConfigError
from testsupport import lab
from testsupport.process import (
    ROOT,
    UUID,
    Script,
    act_as_donor_server,
    donor_args,
    error_lines,
    free_port,
    joiner_args,
    no_processes_left,
    start_script,
    tls_opts,
    write_cnf,
)

NOBODY = 65534


def galera_sst(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`galera-sst ...` from this tree, output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sst", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def victim(tmp_path: Path) -> Path:
    """A root-owned file a local user would like root to overwrite."""
    v = tmp_path / "victim"
    v.write_text("precious\n")
    v.chmod(0o600)
    return v


# -- planted symlinks ------------------------------------------------------------------


def test_planted_symlinks_in_another_users_datadir_are_never_followed(
    node_dir: Path, parent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """A datadir owned by nobody, with symlinks named like every file we write there
    (including the temporary names the old code derived from our pid) pointing at a
    root-owned file: the joiner runs as root, the file is unchanged, no symlink was used."""
    target = victim(tmp_path)
    dd = node_dir / "data"
    os.chown(dd, NOBODY, NOBODY)
    for name in (
        "galera_sst_status.json",
        "wsrep_sst.pid",
        "rsync_sst.pid",
        "stunnel.pid",
        "mariabackup.backup.log",
    ):
        (dd / name).symlink_to(target)
    planted = tmp_path / "made-by-root"  # a dangling link: following it would create this
    (dd / "sst_in_progress").symlink_to(planted)
    port = free_port()
    js = start_script("py_rsync", joiner_args(node_dir, port, parent.pid))
    for name in ("galera_sst_status.json", "wsrep_sst.pid"):  # the old names: <file>.<pid>.tmp
        (dd / f"{name}.{js.proc.pid}.tmp").symlink_to(target)
    assert js.readline().startswith("ready ")
    parent.kill()  # mariadbd dies: the joiner ends
    assert js.wait() == 32
    assert target.read_text() == "precious\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert not planted.exists()
    written = json.loads((dd / "galera_sst_status.json").read_text())
    assert written["state"] == "failed" and not (dd / "galera_sst_status.json").is_symlink()
    assert not (dd / "wsrep_sst.pid").exists()


def test_manual_joiner_refuses_another_users_directory(tmp_path: Path) -> None:
    target = victim(tmp_path)
    d = tmp_path / "incoming"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    (d / "galera_sst_status.json").symlink_to(target)
    r = galera_sst(
        "joiner", "--method", "py_rsync", "--address", "127.0.0.1:1", "--datadir", str(d)
    )
    assert r.returncode == 22
    assert r.stderr.count("\n") == 1 and "is not empty" in r.stderr
    assert "Traceback" not in r.stderr
    assert target.read_text() == "precious\n"


def test_manual_joiner_refuses_an_empty_directory_of_another_user(tmp_path: Path) -> None:
    """Empty, but nobody could plant symlinks in it at any time after the check."""
    for owner, mode in ((NOBODY, 0o755), (0, 0o777)):
        d = tmp_path / f"incoming-{owner}-{mode:o}"
        d.mkdir()
        d.chmod(mode)
        os.chown(d, owner, owner)
        r = galera_sst(
            "joiner", "--method", "py_rsync", "--address", "127.0.0.1:1", "--datadir", str(d)
        )
        assert r.returncode == 22, r.stderr
        assert r.stderr.count("\n") == 1 and "another user or others may write it" in r.stderr
        assert not os.listdir(d)


def test_manual_joiner_refuses_a_place_others_can_change(tmp_path: Path) -> None:
    above = tmp_path / "shared"
    above.mkdir()
    os.chown(above, NOBODY, NOBODY)
    r = galera_sst(
        "joiner",
        "--method",
        "py_rsync",
        "--address",
        "127.0.0.1:1",
        "--datadir",
        str(above / "new"),
    )
    assert r.returncode == 22
    assert "can be changed by another user" in r.stderr and r.stderr.count("\n") == 1
    assert not (above / "new").exists()


def test_manual_joiner_makes_its_own_private_directory(tmp_path: Path) -> None:
    """Where nobody else can write, it makes the directory itself, 0700, and runs (here the
    address is not ours to listen on, so the script itself fails, after making it)."""
    d = tmp_path / "new"
    r = galera_sst(
        "joiner", "--method", "py_rsync", "--address", "127.0.0.1:0", "--datadir", str(d)
    )
    assert d.is_dir() and d.stat().st_mode & 0o777 == 0o700 and d.stat().st_uid == os.geteuid()
    assert "Traceback" not in r.stderr


# -- status ---------------------------------------------------------------------------


GOOD = {
    "method": "py_rsync",
    "role": "joiner",
    "pid": 1,
    "peer": "",
    "tls": "",
    "phase": "receiving",
    "state": "failed",
    "started": 1.0,
    "updated": 2.0,
    "last_progress": 2.0,
    "bytes_done": 0,
    "bytes_expected": 0,
    "rate": 0.0,
    "eta_seconds": None,
    "exit_code": 32,
    "error": "x",
}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        json.dumps(GOOD).encode()[:-7],  # truncated
        b"\x00\xff\xfe binary",
        b"[1, 2]",
        b'"a string"',
        json.dumps({**GOOD, "started": "yesterday"}).encode(),
        json.dumps({**GOOD, "pid": True}).encode(),
        json.dumps({k: v for k, v in GOOD.items() if k != "state"}).encode(),
        b"[" * 100000,
        b'{"rate": NaN}',
    ],
)
def test_status_survives_malformed_files(tmp_path: Path, content: bytes) -> None:
    (tmp_path / status.FILE).write_bytes(content)
    with pytest.raises(ConfigError, match="is not a galera-sst status file"):
        status.read(str(tmp_path))
    r = galera_sst("status", "--datadir", str(tmp_path))
    assert r.returncode == 22
    assert r.stderr.count("\n") == 1 and "not a galera-sst status file" in r.stderr
    assert "Traceback" not in r.stderr and not r.stdout


def test_status_refuses_a_symlink_or_a_fifo(tmp_path: Path) -> None:
    target = victim(tmp_path)
    d = tmp_path / "dd"
    d.mkdir()
    (d / status.FILE).symlink_to(target)
    r = galera_sst("status", "--datadir", str(d))
    assert r.returncode == 22 and "cannot read" in r.stderr and "precious" not in r.stderr
    (d / status.FILE).unlink()
    os.mkfifo(d / status.FILE)
    r = galera_sst("status", "--datadir", str(d), timeout=10)  # never blocks on a FIFO
    assert r.returncode == 22 and "cannot read" in r.stderr


def test_status_escapes_control_characters(tmp_path: Path) -> None:
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\r\u200b\x9b"
    data = {**GOOD, "method": evil, "phase": evil, "error": evil, "peer": evil, "tls": evil}
    (tmp_path / status.FILE).write_text(json.dumps(data))
    r = galera_sst("status", "--datadir", str(tmp_path))
    assert r.returncode == 1
    shown = r.stdout
    assert not any(not c.isprintable() and c != "\n" for c in shown), repr(shown)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\x0d\\u200b\\x9b" in shown
    r = galera_sst("status", "--json", "--datadir", str(tmp_path))
    assert "\x1b" not in r.stdout and json.loads(r.stdout)["error"] == evil
    assert status.printable(str(tmp_path)) == str(tmp_path)


# -- a dead mariadbd while the listener starts ----------------------------------------------


@pytest.mark.parametrize("method", ["py_rsync", "py_mariabackup"])
def test_listener_start_with_mariadbd_gone_is_parent_died_not_port_busy(
    node_dir: Path, method: str
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    port = free_port()
    js = start_script(method, joiner_args(node_dir, port, dead.pid))
    assert js.wait() == 32
    err = js.stderr()
    errors = error_lines(err)
    assert len(errors) == 1, err
    assert f"parent mysqld process (PID {dead.pid}) terminated" in errors[0]
    assert "port" not in errors[0].split("[")[1]  # the reason, not the "where"
    assert no_processes_left([p.pid for p in js.descendants()])


# -- tmpdir -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["run dir with  spaces", "tab\there", 'quote\'s "and" $(x)'])
def test_tmpdir_with_white_space_and_odd_characters_is_used(
    node_dir: Path, parent: subprocess.Popen[bytes], name: str
) -> None:
    tmpdir = node_dir / name
    tmpdir.mkdir()
    write_cnf(node_dir, {"tmpdir": str(tmpdir)})
    port = free_port()
    js = start_script("py_mariabackup", joiner_args(node_dir, port, parent.pid))
    assert js.readline().startswith("ready ")
    deadline = time.monotonic() + 10
    while not list(tmpdir.glob("galera-sst.*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.name[:11] for p in tmpdir.iterdir()] == ["galera-sst."]
    parent.kill()
    assert js.wait() == 32
    assert not list(tmpdir.iterdir())  # the run dir was in it, and is gone


def test_missing_tmpdir_is_one_error_line(node_dir: Path, parent: subprocess.Popen[bytes]) -> None:
    write_cnf(node_dir, {"tmpdir": str(node_dir / "nowhere")})
    js = start_script("py_rsync", joiner_args(node_dir, free_port(), parent.pid))
    assert js.wait() == 2
    err = js.stderr()
    assert "Traceback" not in err
    errors = error_lines(err)
    assert len(errors) == 1 and "[sst] tmpdir" in errors[0] and "does not exist" in errors[0]
    assert not (node_dir / "data" / "wsrep_sst.pid").exists()


def test_unwritable_datadir_is_one_error_line(tmp_path: Path) -> None:
    """As an unprivileged user (mariadbd's), a datadir it may not write."""
    base = Path(tempfile.mkdtemp(prefix="gsst-h5-"))
    try:
        base.chmod(0o755)
        (base / "data").mkdir(mode=0o755)
        write_cnf(base, {})
        args = joiner_args(base, free_port(), os.getpid())
        env = {**os.environ, "PYTHONPATH": str(ROOT), "WSREP_SST_OPT_AUTH": ""}
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        r = subprocess.run(
            [*argv, sys.executable, str(ROOT / "bin" / "wsrep_sst_py_rsync"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(base)
    assert r.returncode == 13, r.stderr
    assert "Traceback" not in r.stderr
    errors = error_lines(r.stderr)
    assert len(errors) == 1 and "Permission denied" in errors[0] and "wsrep_sst.pid" in errors[0]


def test_rsync_tls_join_with_white_space_in_both_tmpdirs(
    node_dir: Path, tmp_path: Path, parent: subprocess.Popen[bytes]
) -> None:
    """The run directories (configs for rsync and stunnel) live in tmpdirs with spaces, one
    of them given relative to the script's working directory."""
    c = lab.make_certs(str(tmp_path / "certs"), {"j": "127.0.0.1", "d": "127.0.0.1"}, owner="root")
    jbase = tmp_path / "j"
    (jbase / "data").mkdir(parents=True)
    tmpdirs = {"j": tmp_path / "joiner run dir", "d": tmp_path / "donor  run\tdir"}
    for who, base in (("j", jbase), ("d", node_dir)):
        tmpdirs[who].mkdir()
        write_cnf(base, {**tls_opts(c, who, "VERIFY_IDENTITY"), "tmpdir": str(tmpdirs[who])})
    # The joiner's tmpdir is relative (to its cwd, as mariadbd's datadir would be).
    write_cnf(jbase, {**tls_opts(c, "j", "VERIFY_IDENTITY"), "tmpdir": "joiner run dir"})
    j = Script(
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bin" / "wsrep_sst_py_rsync"),
                *joiner_args(jbase, free_port(), parent.pid),
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "WSREP_SST_OPT_AUTH": ""},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    )
    auth, _, address = j.readline()[6:].rpartition("@")
    d = start_script(
        "py_rsync", donor_args(node_dir, address), env={"WSREP_SST_OPT_REMOTE_AUTH": auth}
    )
    act_as_donor_server(d, node_dir / "data")
    assert d.wait() == 0, d.stderr()
    assert j.readline() == f"{UUID}:5 0", j.stderr()
    assert j.wait() == 0, j.stderr()
    assert (jbase / "data" / "db1" / "t.ibd").read_bytes() == (
        node_dir / "data" / "db1" / "t.ibd"
    ).read_bytes()
    assert not list(tmpdirs["j"].iterdir()) and not list(tmpdirs["d"].iterdir())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@example({"bytes_done": 10**400}, True)
@example({"started": -(10**400)}, True)
@given(st.dictionaries(st.sampled_from(sorted(GOOD)), JSON), st.booleans())
def test_status_of_any_json_is_a_description_or_one_error(
    fields: dict[str, object], on_good: bool
) -> None:
    """Whatever JSON the file holds (on top of a good one, or alone): a description of
    printable lines, or ConfigError; never another exception."""
    data = {**GOOD, **fields} if on_good else fields
    with tempfile.TemporaryDirectory() as d:
        Path(d, status.FILE).write_text(json.dumps(data))
        try:
            got = status.read(d)
        except ConfigError as exc:
            assert "not a galera-sst status file" in exc.message
            return
    assert got is not None
    text = status.describe(got)
    assert all(c.isprintable() for line in text.splitlines() for c in line)
