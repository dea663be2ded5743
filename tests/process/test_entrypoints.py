"""Property test over the real entry points: mariadbd's argv and environment with junk in
them, and broken file-system states (missing tmpdir, read-only datadir, a full disk on a
small tmpfs, unreadable option files). Whatever the input: exactly one ERROR line (none on
success), an exit code from the contract, no traceback, no process of the run left."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from testsupport.cluster import leftovers
from testsupport.process import ROOT, UUID, error_lines, free_port

# docs/contract.md 2.6, plus EACCES (13) and ENOSPC (28) for our own files (sst/errors.py).
CONTRACT = {0, 1, 2, 3, 12, 13, 16, 21, 22, 28, 32, 42, 71, 93, 114, 255}
# Seconds a script may run before it gets a SIGTERM: every wait is configured shorter in
# the option file, but junk may drop that file, and a donor then waits for mariadbd's FLUSH
# TABLES as long as the default says. A SIGTERM must then end it just as cleanly.
PATIENCE = 15.0

JUNK = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
) | st.sampled_from(
    [
        "--role",
        "--datadir",
        "--address",
        "--parent",
        "--bypass",
        "--mysqld-args",
        "-",
        "",
        "=",
        "'",
        "$(id)",
        "\n",
        "127.0.0.1:0",
        "[::1]:70000",
        "joiner",
        "donor",
        "/",
        "-1",
        "99999999",
    ]
)
STATES = (
    "plain",
    "no-tmpdir",
    "tmpdir-is-a-file",
    "full-datadir",
    "full-tmpdir",
    "read-only-datadir",
    "datadir-under-a-file",
    "cnf-is-a-directory",
    "cnf-missing",
    "cnf-binary",
    "cnf-is-a-fifo",
)


@dataclass(frozen=True)
class Mounts:
    full: Path  # a tmpfs with no space left (directories made before it filled)
    readonly: Path  # a read-only tmpfs with an empty directory in it
    sink: int  # a port where something accepts and drains connections


def _mount(path: Path, size: str) -> None:
    path.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True
    )


@pytest.fixture(scope="module")
def mounts() -> Iterator[Mounts]:
    base = Path(tempfile.mkdtemp(prefix="gsst-fs-"))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    while conn.recv(1 << 16):
                        pass
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    full, ro = base / "full", base / "ro"
    try:
        _mount(full, "128k")
        _mount(ro, "64k")
        (full / "dd").mkdir()
        (full / "tmp").mkdir()
        (ro / "dd").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={full / 'filler'}", "bs=4k"],
            capture_output=True,
            check=False,
        )  # until the disk is full
        yield Mounts(full, ro, int(srv.getsockname()[1]))
    finally:
        stop.set()
        t.join()
        srv.close()
        # A mount still busy means something is left running: name it, detach the mount
        # all the same (nothing stays mounted), and fail.
        busy = []
        for m in (full, ro):
            if os.path.ismount(m) and subprocess.run(["umount", str(m)], check=False).returncode:
                busy.append(m)
        holders = leftovers(str(base)) if busy else []
        for m in busy:
            subprocess.run(["umount", "-l", str(m)], check=False)
        shutil.rmtree(base)
        if busy:
            pytest.fail(f"left running, holding {busy}: {holders}", pytrace=False)


def _layout(state: str, mounts: Mounts, work: Path) -> tuple[str, str]:
    """Given a state, returns (datadir, defaults-file) with tmpdir etc. set up for it."""
    datadir, tmpdir = work / "data", work / "tmp"
    datadir.mkdir()
    tmpdir.mkdir()
    if state == "no-tmpdir":
        tmpdir = work / "nowhere"
    elif state == "tmpdir-is-a-file":
        tmpdir = work / "afile"
        tmpdir.write_text("x")
    elif state == "full-datadir":
        datadir = mounts.full / "dd"
    elif state == "full-tmpdir":
        tmpdir = mounts.full / "tmp"
    elif state == "read-only-datadir":
        datadir = mounts.readonly / "dd"
    elif state == "datadir-under-a-file":
        (work / "afile").write_text("x")
        datadir = work / "afile" / "data"
    cnf = work / "my.cnf"
    cnf.write_text(
        "[mysqld]\n[sst]\n"
        f"tmpdir={tmpdir}\nsst-initial-timeout=2\nsst-idle-timeout=2\nsst-flush-timeout=2\n"
    )
    if state == "cnf-is-a-directory":
        cnf = work / "cnfdir"
        cnf.mkdir()
    elif state == "cnf-missing":
        cnf = work / "missing.cnf"
    elif state == "cnf-is-a-fifo":
        cnf = work / "fifo.cnf"
        os.mkfifo(cnf)
    elif state == "cnf-binary":
        cnf.write_bytes(os.urandom(200) + b"\n[sst]\n\xff\xfe=\x00\n")
    return str(datadir), str(cnf)


def _args(role: str, method: str, datadir: str, cnf: str, sink: int, dead: int) -> list[str]:
    common = ["--datadir", datadir, "--defaults-file", cnf, "--progress", "0"]
    if role == "joiner":
        return [
            "--role",
            "joiner",
            "--address",
            f"127.0.0.1:{free_port()}",
            "--parent",
            str(dead),
            *common,
        ]
    module = "rsync_sst" if "rsync" in method else "xtrabackup_sst//1"
    return [
        "--role",
        role,
        "--address",
        f"127.0.0.1:{sink}/{module}",
        "--socket",
        "/nonexistent.sock",
        "--gtid",
        f"{UUID}:5",
        "--gtid-domain-id",
        "0",
        *common,
    ]


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, bool]:
    """Run a script in cwd (junk may name relative directories); returns its exit status,
    its stderr and whether it needed a SIGTERM."""
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stopped = False
    try:
        _, err = proc.communicate(timeout=PATIENCE)
    except subprocess.TimeoutExpired:
        stopped = True
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail(f"{argv} did not end within 60 s of a SIGTERM")
    return proc.returncode, err.decode("utf-8", "replace"), stopped


def _leftovers(token: str) -> list[str]:
    """Processes (other than zombies) whose environment carries the run's token."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("GSST_RUN_TOKEN") == token and p.status() != "zombie":
                found.append(" ".join(p.cmdline()))
        except (psutil.Error, OSError):
            continue
    return found


@pytest.mark.parametrize("state", STATES)
@settings(
    max_examples=4,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking processes takes ages
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# The clean request in every state, whatever the random draws add.
@example(method="py_rsync", role="donor", bypass=False, edits=[], drop=[], env={})
@example(method="py_mariabackup", role="joiner", bypass=False, edits=[], drop=[], env={})
@given(
    method=st.sampled_from(["py_rsync", "py_rsync_wan", "py_mariabackup"]),
    role=st.sampled_from(["joiner", "donor", "junk"]),
    bypass=st.booleans(),
    edits=st.lists(st.tuples(st.integers(0, 30), JUNK), max_size=3),
    drop=st.lists(st.integers(0, 30), max_size=2),
    env=st.dictionaries(
        st.sampled_from(
            [
                "WSREP_SST_OPT_AUTH",
                "WSREP_SST_OPT_REMOTE_AUTH",
                "WSREP_SST_OPT_USER",
                "WSREP_SST_OPT_PSWD",
                "TMPDIR",
            ]
        ),
        JUNK,
        max_size=3,
    ),
)
def test_every_run_ends_in_one_error_line_and_a_contract_code(
    mounts: Mounts,
    method: str,
    role: str,
    state: str,
    bypass: bool,
    edits: list[tuple[int, str]],
    drop: list[int],
    env: dict[str, str],
) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    work = Path(tempfile.mkdtemp(prefix="gsst-run-"))
    try:
        datadir, cnf = _layout(state, mounts, work)
        args = _args(
            "donor" if role == "junk" else role, method, datadir, cnf, mounts.sink, dead.pid
        )
        if role == "junk":
            args[1] = "junk"
        if bypass:
            args.append("--bypass")
        for i in sorted(set(drop), reverse=True):
            if i < len(args):
                del args[i]
        for i, junk in edits:
            args.insert(min(i, len(args)), junk)
        token = uuid.uuid4().hex
        run_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "GSST_RUN_TOKEN": token}
        script = ROOT / "bin" / f"wsrep_sst_{method}"
        code, err, stopped = _run([sys.executable, str(script), *args], run_env, work)
        assert "Traceback" not in err, err
        assert code in CONTRACT, err
        assert not stopped or code == 3, err  # still waiting, then a SIGTERM: exit 3
        errors = error_lines(err)
        assert len(errors) == (0 if code == 0 else 1), err
        assert not errors or "internal error" not in errors[0], err
        assert not _leftovers(token)
        if state.startswith("full") or state == "read-only-datadir":
            assert not [n for n in os.listdir(Path(datadir)) if n != "filler"] or state.endswith(
                "tmpdir"
            ), os.listdir(datadir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for leftover in (mounts.full / "dd", mounts.full / "tmp"):
            for p in leftover.iterdir():  # a failed run must not fill the next one's view
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()


# `galera-sst` itself: never a command that changes the system (install, uninstall, demo).
SAFE_COMMANDS = st.sampled_from(["status", "check", "joiner", "donor", "--version", "-h", ""])


@settings(
    max_examples=25,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@example(command="status", args=["--datadir", "/nonexistent"])
@example(command="status", args=["--datadir", "\x1b[2J"])
@example(command="joiner", args=["--address", "127.0.0.1:0", "--datadir", "/proc/x"])
@example(command="check", args=["--defaults-file", "/"])
@given(command=SAFE_COMMANDS, args=st.lists(JUNK, max_size=6))
def test_galera_sst_never_shows_a_traceback(command: str, args: list[str]) -> None:
    if command in ("install", "uninstall", "demo", "sst") or {"install", "uninstall"} & set(args):
        return
    work = Path(tempfile.mkdtemp(prefix="gsst-cli-"))
    try:
        argv = [sys.executable, "-m", "sst", *([command] if command else []), *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code, err, stopped = _run(argv, env, work)
        assert "Traceback" not in err, err
        assert not stopped or code == 3, err
        assert code in CONTRACT, err
        assert "internal error" not in err, err
        lines = [ln for ln in err.splitlines() if ln.startswith("galera-sst ")]
        assert len(lines) <= 1, err
    finally:
        shutil.rmtree(work, ignore_errors=True)
