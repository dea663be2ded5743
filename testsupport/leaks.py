"""A watcher for secrets during real SSTs: the SST password and the VERIFY secret must not
appear in any argv (world-readable), in the environment of any child of our scripts, or in
the logs. Our own script's environment holds them because mariadbd puts them there."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


def _ours(p: psutil.Process) -> bool:
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return len(cmd) >= 2 and "python" in cmd[0] and "wsrep_sst_" in cmd[1]


class LeakWatch:
    """Samples our SST scripts and their descendants until stopped."""

    def __init__(self, password: str, period: float = 0.02) -> None:
        self.secrets: set[str] = {password}
        self.hits: list[str] = []
        self.samples = 0
        self.scripts_seen = 0
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _learn(self, p: psutil.Process) -> None:
        try:
            env = p.environ()
        except psutil.Error:
            return
        auth = env.get("WSREP_SST_OPT_AUTH", "")
        if ":" in auth:
            self.secrets.add(auth.split(":", 1)[1])
        remote = env.get("WSREP_SST_OPT_REMOTE_AUTH", "")
        if ":" in remote and remote.split(":", 1)[1]:
            self.secrets.add(remote.split(":", 1)[1])

    def _check(self, p: psutil.Process, *, child: bool) -> None:
        try:
            argv = " ".join(p.cmdline())
            env = "\n".join(f"{k}={v}" for k, v in p.environ().items()) if child else ""
        except psutil.Error:
            return
        for s in self.secrets:
            if s and s in argv:
                self.hits.append(f"argv of {p.pid} ({p.name()}) holds a secret")
            if s and s in env:
                self.hits.append(f"environment of child {p.pid} ({p.name()}) holds a secret")

    def _run(self) -> None:
        seen: set[int] = set()
        while not self._stop.is_set():
            for p in psutil.process_iter():
                if not _ours(p):
                    continue
                if p.pid not in seen:
                    seen.add(p.pid)
                    self.scripts_seen += 1
                self._learn(p)
                self._check(p, child=False)
                try:
                    kids = p.children(recursive=True)
                except psutil.Error:
                    continue
                try:
                    own = p.cmdline()
                except psutil.Error:
                    continue
                for k in kids:
                    try:
                        if k.cmdline() == own:
                            continue  # forked but not yet exec'ed: still a copy of the script
                    except psutil.Error:
                        continue
                    self._check(k, child=True)
            self.samples += 1
            time.sleep(self._period)

    def scan_files(self, root: str, *, skip: tuple[str, ...] = ()) -> int:
        """Record a hit for every file under root that another user could read and that
        holds a secret (skip: paths the operator wrote the secret into on purpose, such as
        the option file with wsrep_sst_auth). Returns how many files were read."""
        read = 0
        for d, dirs, files in os.walk(root):
            if not _traversable(d):  # no other user gets below d: nothing here is exposed
                dirs.clear()
                continue
            for name in files:
                path = os.path.join(d, name)
                if path in skip:
                    continue
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IROTH:
                        continue
                    with open(path, "rb") as f:
                        data = f.read(8 << 20)
                except OSError:
                    continue
                read += 1
                for s in self.secrets:
                    if s and s.encode() in data:
                        self.hits.append(f"{path} (world-readable) holds a secret")
        return read

    def scan_text(self, where: str, text: str) -> None:
        """Record a hit if text holds a secret."""
        for s in self.secrets:
            if s and s in text:
                self.hits.append(f"{where} holds a secret")


def _traversable(directory: str) -> bool:
    """directory and every one above it let other users through (o+x)."""
    d = directory
    while d and d != "/":
        try:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        d = os.path.dirname(d)
    return True


@contextmanager
def watching(password: str) -> Iterator[LeakWatch]:
    """Run a LeakWatch for the duration of the block."""
    w = LeakWatch(password)
    w._thread.start()
    try:
        yield w
    finally:
        w._stop.set()
        w._thread.join(timeout=5)
