"""The single-instance guard `wsrep_sst.pid` and other pid files, checked against reuse, and
the one way we write a small file in a directory others may write (the datadir, a manual
joiner's directory): a new private name, then a rename over the old one."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time

import psutil

from sst.errors import AlreadyRunning

# A new file only: never an existing one, never through a symlink.
CREATE_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def replace_file(path: str, data: bytes, mode: int | None = 0o644, *, sync: bool = False) -> None:
    """Given a path and its new content, write a fresh file under a random private name
    (O_CREAT|O_EXCL|O_NOFOLLOW: never through a planted symlink, never into someone else's
    file) and rename it over path (a symlink at path is replaced, not followed).
    The file gets exactly `mode` (None: what open() would give, 0o666 less the umask);
    with sync, its data reach the disk before the rename (the caller fsyncs the directory).
    Raises OSError; the temporary file never survives a failure."""
    if mode is None:
        mask = os.umask(0o022)
        os.umask(mask)
        mode = 0o666 & ~mask
    folder, base = os.path.split(path)
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, CREATE_NEW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # exactly this mode, whatever the umask
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_small(path: str, limit: int = 1 << 20) -> bytes:
    """Given a path, returns at most limit bytes of it if it is a regular file (a symlink,
    FIFO or device is refused without blocking). Raises OSError."""
    fd = os.open(path, _READ)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"not a regular file: {path}")
        return f.read(limit)


def read_pid(path: str) -> int:
    """The pid in a file, or 0 if missing, unreadable or not a plain number."""
    try:
        text = read_small(path, 64).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


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
    """Write our pid (or pid) atomically, never through a symlink. Raises OSError."""
    replace_file(path, f"{pid or os.getpid()}\n".encode("ascii"))


def remove(path: str) -> None:
    """Remove a file if it exists; a failure to remove is not an error of its own (cleanup
    must go on and the original error stays the one reported)."""
    with contextlib.suppress(OSError):
        os.unlink(path)
