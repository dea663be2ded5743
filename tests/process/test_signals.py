"""Signals during cleanup: a second and third SIGTERM while a mariabackup donor is stopping its
pipeline (mariadb-backup | compressor | socat) must not cut the cleanup short."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from testsupport.process import (
    ROOT,
    donor_args,
    error_lines,
    fake_tool,
    no_processes_left,
    start_script,
    write_cnf,
)

# Streams until killed; ignores SIGTERM (records it), so only the cleanup's SIGKILL ends it.
FAKE_BACKUP = """
if [ "$1" = --version ]; then
    echo "mariadb-backup based on MariaDB server 10.11.19-MariaDB"; exit 0
fi
touch "{marks}/stage2"
trap 'echo TERM >> "{marks}/mariadb-backup"' TERM
while :; do head -c 65536 /dev/zero; sleep 0.1; done
"""
# Passes the stream on; in stage 2 it then lingers, deaf to SIGTERM like a busy compressor.
FAKE_COMPRESSOR = """
trap '' TERM
cat
if [ -e "{marks}/stage2" ]; then sleep 60; fi
"""


@pytest.fixture
def sink() -> Iterator[int]:
    """A stock-like joiner end: accepts connections and drains them; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 16):
                time.sleep(0.05)  # a slow joiner keeps the pipeline busy

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    srv.close()


@pytest.mark.parametrize("more", [0, 2])
def test_more_sigterms_during_cleanup_cannot_cut_it_short(
    tmp_path: Path, fakebin: Path, sink: int, more: int
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    fake_tool(fakebin, "mariadb-backup", FAKE_BACKUP.format(marks=marks))
    fake_tool(fakebin, "slowzip", FAKE_COMPRESSOR.format(marks=marks))
    base = tmp_path / "d"
    (base / "data").mkdir(parents=True)
    tmpdir = tmp_path / "runtmp"
    tmpdir.mkdir()
    write_cnf(base, {"tmpdir": str(tmpdir), "compressor": "slowzip"})
    ds = start_script(
        "py_mariabackup",
        donor_args(base, f"127.0.0.1:{sink}/xtrabackup_sst//1"),
        env={"WSREP_SST_OPT_USER": "root", "WSREP_SST_OPT_PSWD": "secret"},
        path_prefix=str(fakebin),
    )
    # Stage 2 is running once the credentials file exists and mariadb-backup streams.
    deadline = time.monotonic() + 60
    names = set()
    while time.monotonic() < deadline:
        creds = list(tmpdir.glob("galera-sst.*/credentials.cnf"))
        names = _names(ds.proc.pid)
        if creds and {"socat", "slowzip", "mariadb-backup"} <= names:
            break
        assert ds.proc.poll() is None, ds.stderr()
        time.sleep(0.1)
    else:
        pytest.fail(f"stage 2 never ran: {names}")
    family = [p.pid for p in _family(ds.proc.pid)]
    ds.proc.send_signal(signal.SIGTERM)
    # The cleanup has begun once mariadb-backup got its SIGTERM; it lasts until the SIGKILL.
    deadline = time.monotonic() + 10
    while not (marks / "mariadb-backup").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (marks / "mariadb-backup").exists(), "the cleanup never signalled mariadb-backup"
    for _ in range(more):
        time.sleep(0.3)
        assert ds.proc.poll() is None, "the cleanup cannot be over yet"
        ds.proc.send_signal(signal.SIGTERM)
    assert ds.wait(timeout=60) == 3
    err = ds.stderr()
    errors = error_lines(err)
    assert len(errors) == 1 and "terminated by signal SIGTERM" in errors[0], err
    assert "Traceback" not in err
    assert no_processes_left(family)
    assert not list(tmpdir.iterdir())  # the run directory, credentials and all, is gone
    assert not (base / "data" / "wsrep_sst.pid").exists()


def _names(pid: int) -> set[str]:
    out = set()
    for p in _family(pid):
        try:
            out.add(p.name())
        except psutil.NoSuchProcess:
            continue
    return out


def _family(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


SHIELD = """
import os, signal, time
from sst.errors import Interrupted
from sst.process.runner import cleanup_shield, install_signal_handlers
install_signal_handlers()
try:
    with cleanup_shield():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        print("cleanup completed", flush=True)
except Interrupted as exc:
    print("then raised:", exc, flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # the run is ending: ignored
time.sleep(0.2)
print("exit", flush=True)
"""


def test_a_signal_inside_cleanup_is_raised_after_it_and_then_ignored() -> None:
    r = subprocess.run(
        [sys.executable, "-c", SHIELD],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=30,
        check=False,
    )
    assert r.stdout.splitlines() == [
        "cleanup completed",
        "then raised: terminated by signal SIGTERM",
        "exit",
    ], r.stderr
    assert r.returncode == 0


SIGNAL_AFTER_RESULT = """
import os, signal, sys, time
from sst.process.runner import ending, install_signal_handlers, signal_after_ending
from sst.protocol import Stdout, donor_stdout
install_signal_handlers()
r, w = os.pipe()
out = donor_stdout(w, on_result=ending) if sys.argv[1] == "donor" else Stdout(w, on_result=ending)
if sys.argv[2] == "after":
    out.done("{uuid}:5") if sys.argv[1] == "donor" else out.coordinates("{uuid}:5")
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)  # the handler runs here
except BaseException as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
print("ignored", signal_after_ending())
"""


@pytest.mark.parametrize("role", ["donor", "joiner"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_signal_after_the_result_line_ends_nothing(role: str, when: str) -> None:
    """A SIGTERM once the result line is out (the donor's `done`, the joiner's coordinates;
    mariadbd shutting down right after an IST, as MariaDB's suite does) is remembered, not
    raised: the run ends as the success it was. Before that line it ends the run (exit 3)."""
    code = SIGNAL_AFTER_RESULT.replace("{uuid}", "0b9b7dbe-9e5e-11ee-8c90-0242ac120002")
    res = subprocess.run(
        [sys.executable, "-c", code, role, when],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if when == "after":
        assert (res.returncode, res.stdout.strip()) == (0, "ignored SIGTERM"), res.stderr
    else:
        assert res.returncode == 3, res.stderr
        assert res.stdout.strip() == "Interrupted terminated by signal SIGTERM"
