"""The supervised runner: pipes, failures, deadlines, tree kill, the parent watch."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from sst.errors import AlreadyRunning, ParentGone, Timeout, ToolFailed
from sst.process import pidfile
from sst.process.runner import ParentWatch, Stage, Supervisor, kill_tree, run_capture
from testsupport.process import ROOT, free_port, no_processes_left


def test_pipeline_joins_stages_with_os_pipes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with Supervisor() as sup, open(out, "wb") as f:
        kids = sup.pipeline(
            [Stage(("head", "-c", "100000", "/dev/zero")), Stage(("wc", "-c"))], stdout=f
        )
        sup.wait(kids, what="test")
    assert out.read_text().strip() == "100000"


def test_failed_stage_kills_the_rest_and_reports(tmp_path: Path) -> None:
    with Supervisor() as sup:
        kids = sup.pipeline(
            [
                Stage(("sleep", "30"), name="sleeper"),
                Stage(("sh", "-c", "echo 'disk on fire' >&2; exit 7"), name="failing"),
            ]
        )
        with pytest.raises(ToolFailed) as e:
            sup.wait(kids, what="copying")
        pids = [k.pid for k in kids]
    assert e.value.message == "copying: failing exited with 7: disk on fire"
    assert no_processes_left(pids)


def test_errno_rule_per_stage() -> None:
    with Supervisor() as sup:
        k = sup.start(Stage(("sh", "-c", "exit 12"), errno_for=lambda rc: 71 if rc == 12 else 1))
        with pytest.raises(ToolFailed) as e:
            sup.wait([k], what="x")
    assert e.value.code == 71


def test_timeout_kills_grandchildren() -> None:
    with Supervisor() as sup:
        k = sup.start(Stage(("sh", "-c", "sleep 60 & sleep 60; wait")))
        time.sleep(0.3)
        family = [k.pid] + [c.pid for c in psutil.Process(k.pid).children(recursive=True)]
        assert len(family) >= 2
        with pytest.raises(Timeout, match=r"no result after 0\.5 s"):
            sup.wait([k], what="stuck", timeout=0.5)
    assert no_processes_left(family)


def test_idle_timeout() -> None:
    with Supervisor() as sup:
        k = sup.start(Stage(("sleep", "60")))
        t0 = time.monotonic()
        with pytest.raises(Timeout, match=r"no progress for 0\.3 s"):
            sup.wait([k], what="stalled", idle=lambda: time.monotonic() - t0, idle_timeout=0.3)
    assert no_processes_left([k.pid])


def test_close_kills_everything_left() -> None:
    sup = Supervisor()
    kids = [sup.start(Stage(("sleep", "60"))) for _ in range(3)]
    sup.close()
    assert no_processes_left([k.pid for k in kids])


def test_parent_watch() -> None:
    parent = subprocess.Popen(["sleep", "60"])
    watch = ParentWatch(parent.pid)
    assert watch.alive()
    with Supervisor(watch) as sup:
        k = sup.start(Stage(("sleep", "60")))
        parent.kill()
        parent.wait()
        with pytest.raises(ParentGone, match=f"PID {parent.pid}"):
            sup.wait([k], what="receiving")
    assert no_processes_left([k.pid])
    assert not ParentWatch(parent.pid).alive()


def test_children_never_get_our_stdout() -> None:
    code = (
        "from sst.process.runner import Supervisor, Stage\n"
        "with Supervisor() as s:\n"
        "    s.wait([s.start(Stage(('echo', 'LEAK')))], what='x')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, cwd=str(ROOT)
    )
    assert res.stdout == b""  # mariadbd's pipe stays clean
    assert b"LEAK" in res.stderr


def test_run_capture_timeout() -> None:
    with pytest.raises(Timeout):
        run_capture(("sleep", "10"), timeout=0.3)
    assert run_capture(("sh", "-c", "echo hi; echo err >&2")).stdout == "hi\n"


def test_pidfile_stale_and_live(tmp_path: Path) -> None:
    path = str(tmp_path / "wsrep_sst.pid")
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_pid(path, dead.pid)
    pidfile.wait_stale(path, "x", attempts=2, delay=0.05)
    assert not os.path.exists(path)
    # A pid reused by an unrelated process is stale too.
    other = subprocess.Popen(["sleep", "30"])
    pidfile.write_pid(path, other.pid)
    pidfile.wait_stale(path, "x", attempts=2, delay=0.05)
    other.kill()
    other.wait()
    live = subprocess.Popen(["bash", "-c", "exec -a wsrep_sst_py_rsync sleep 30"])
    time.sleep(0.2)
    pidfile.write_pid(path, live.pid)
    with pytest.raises(AlreadyRunning) as e:
        pidfile.wait_stale(path, "a previous SST script", attempts=2, delay=0.05)
    assert e.value.code == 114 and str(live.pid) in e.value.message
    live.kill()
    live.wait()


def test_children_never_inherit_sst_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WSREP_SST_OPT_AUTH", "sst:Very-Secret-1")
    monkeypatch.setenv("WSREP_SST_OPT_REMOTE_AUTH", "node2:Very-Secret-2")
    monkeypatch.setenv("MYSQL_PWD", "Very-Secret-3")
    monkeypatch.setenv("KEEP_ME", "yes")
    dump = tmp_path / "env"
    with Supervisor() as sup, open(dump, "wb") as f:
        sup.wait([sup.start(Stage(("env",)), stdout=f)], what="env")
    text = dump.read_text()
    assert "Very-Secret" not in text and "KEEP_ME=yes" in text
    assert "Very-Secret" not in run_capture(("env",)).stdout


def wait_zombie(pid: int) -> None:
    """Wait (up to 10 s) until pid shows as a zombie."""
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)


NEVER_REAPS = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(60)
"""


def test_kill_tree_takes_a_zombie_for_ended_without_waiting() -> None:
    # A process whose parent never collects its exit status stays a zombie, as an orphan
    # does under a PID 1 that does not reap (a container's): nothing can kill it, so
    # kill_tree must not wait out its grace period for it (it held a donor's exit by 1 s
    # after its `done`, long enough for mariadbd's shutdown to catch it).
    parent = subprocess.Popen(
        [sys.executable, "-c", NEVER_REAPS], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        zombie = int(parent.stdout.readline())
        wait_zombie(zombie)
        start = time.monotonic()
        kill_tree(zombie, grace=3.0)
        assert time.monotonic() - start < 1.0
    finally:
        parent.kill()
        parent.wait()
    assert no_processes_left([parent.pid, zombie])


LEADER_EXITS_ALONE = """
import ctypes, os, threading, time
threading.Thread(target=time.sleep, args=(60,)).start()
print(os.getpid(), flush=True)
ctypes.CDLL(None).syscall(60, 0)  # SYS_exit (x86-64): the main thread only
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="SYS_exit is 60 on x86-64 only")
def test_kill_tree_kills_a_process_whose_main_thread_exited() -> None:
    # Its leader shows as a zombie while the other threads run (and hold its files and
    # sockets): that is no ended process, and our popen.wait() would block on it forever.
    proc = subprocess.Popen([sys.executable, "-c", LEADER_EXITS_ALONE], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        wait_zombie(pid)
        kill_tree(pid, grace=1.0)
        assert proc.wait(timeout=5) == -signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


TRAPS_USR1 = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, lambda *_: sys.exit(7))
print("ready", flush=True)
time.sleep(60)
"""


def test_stop_asks_with_the_stages_own_stop_signal() -> None:
    # A stage that ignores SIGTERM and ends on its stop signal ends by it (status 7), not
    # by the SIGKILL that follows the grace period.
    with Supervisor() as sup:
        k = sup.start(
            Stage((sys.executable, "-c", TRAPS_USR1), stop_signal=signal.SIGUSR1),
            stdout=subprocess.PIPE,
        )
        assert k.popen.stdout is not None and k.popen.stdout.readline() == b"ready\n"
        sup.stop(k)
        assert k.popen.returncode == 7
    assert no_processes_left([k.pid])


def test_rsync_daemon_ends_on_the_joiners_stop_signal(tmp_path: Path) -> None:
    # The joiner stops its rsync daemon with SIGUSR1 (rsync sleeps 400 ms on SIGTERM
    # first): rsync ends by it ("received SIGUSR1", 19) and removes its pid file.
    pid_file = tmp_path / "rsyncd.pid"
    conf = tmp_path / "rsyncd.conf"
    conf.write_text(f"pid file = {pid_file}\n[m]\npath = {tmp_path}\n")
    port = str(free_port())
    argv = ["rsync", "--daemon", "--no-detach", "--address", "127.0.0.1", "--port", port]
    argv += ["--config", str(conf)]
    with Supervisor() as sup:
        k = sup.start(Stage(tuple(argv), stop_signal=signal.SIGUSR1))
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid_file.exists()
        sup.stop(k)
        assert k.popen.returncode == 19
    assert not pid_file.exists()
    assert no_processes_left([k.pid])


def test_nap_ends_when_a_child_ends() -> None:
    # The next step of an SST starts when the last one ends, not at the next tick.
    with Supervisor() as sup:
        k = sup.start(Stage(("sleep", "0.2")))
        start = time.monotonic()
        sup.nap([k], 30)
        assert time.monotonic() - start < 10
        assert k.popen.wait(timeout=5) == 0


def test_nap_ends_on_wake_from_another_thread() -> None:
    # A stage's stderr relay (another thread) ends the supervisor's nap, e.g. when the
    # rsync daemon logs the completion file.
    with Supervisor() as sup:
        k = sup.start(Stage(("sleep", "60")))
        threading.Timer(0.2, sup.wake).start()
        start = time.monotonic()
        sup.nap([k], 30)
        assert time.monotonic() - start < 10
        assert k.poll() is None
    assert no_processes_left([k.pid])
