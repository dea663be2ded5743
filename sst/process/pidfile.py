"""The single-instance guard `wsrep_sst.pid` and other pid files, checked against reuse."""

from __future__ import annotations

import contextlib
import os
import time

import psutil

from sst.errors import AlreadyRunning


def read_pid(path: str) -> int:
    """The pid in a file, or 0 if missing or unreadable."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else 0
    except OSError:
        return 0


def _is_sst_process(pid: int) -> bool:
    """True if pid runs and looks like an SST script or helper (not a reused pid)."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        words = " ".join(p.cmdline()).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(k in words for k in ("wsrep_sst", "galera-sst", "rsync", "stunnel", "socat"))


def wait_stale(path: str, what: str, attempts: int = 30, delay: float = 1.0) -> None:
    """Wait while the process in `path` is alive (stock: 30 x 1 s), then raise 114.

    A file naming a dead or unrelated process is stale and is removed.
    """
    for _ in range(attempts):
        pid = read_pid(path)
        if not _is_sst_process(pid):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        time.sleep(delay)
    raise AlreadyRunning(
        f"{what} (PID {read_pid(path)}, {path}) is still running after {attempts * delay:g} s"
    )


def write_pid(path: str, pid: int | None = None) -> None:
    """Write our pid atomically."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{pid or os.getpid()}\n")
    os.replace(tmp, path)


def remove(path: str) -> None:
    """Remove a file if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
