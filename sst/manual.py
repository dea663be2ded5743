"""`galera-sst joiner` / `galera-sst donor`: an SST outside mariadbd, to try certificates and
network paths before a real join. This process plays mariadbd's part: it starts the same SST
script, reads its stdout protocol and shows progress (a bar on a terminal, lines otherwise).

The joiner only receives into an empty directory, never into a live datadir. The donor sends
from a running server; rsync's donor needs mariadbd's FLUSH TABLES WITH READ LOCK, so a
manual rsync donor sends only the completion file (a bypass): it proves the TLS path."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from typing import TextIO

from sst.errors import ConfigError
from sst.process.runner import cleanup_shield, kill_tree
from sst.request import MethodName

ZERO_GTID = "00000000-0000-0000-0000-000000000000:-1"


def _script(method: str) -> str:
    name = f"wsrep_sst_{method}"
    path = os.path.join(sysconfig.get_path("scripts"), name)
    if not os.path.exists(path):
        raise ConfigError(f"{name} is not installed next to this galera-sst ({path})")
    return path


class Progress:
    """`total`/`complete` lines shown as a bar on a terminal, or as plain lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.total = 0
        self.done = 0
        self.t0 = time.monotonic()
        self._last_plain = 0.0

    def line(self, text: str) -> bool:
        """Consume a progress line; False if it is not one."""
        word, _, value = text.partition(" ")
        if word not in ("total", "complete") or not value.strip().isdigit():
            return False
        n = int(value)
        if word == "total":
            self.total, self.done = n, 0
        else:
            self.done = max(self.done, n)
        self._show()
        return True

    def _show(self) -> None:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        rate = self.done / elapsed / 2**20
        if self.total:
            pct = min(100.0, 100.0 * self.done / self.total)
            bar = "#" * int(pct / 4)
            text = f"[{bar:25}] {pct:5.1f}% {self.done / 2**20:8.1f} MiB {rate:6.1f} MiB/s"
        else:
            text = f"{self.done / 2**20:8.1f} MiB {rate:6.1f} MiB/s"
        if self.tty:
            self.out.write("\r" + text)
            self.out.flush()
        elif time.monotonic() - self._last_plain >= 5:
            self._last_plain = time.monotonic()
            self.out.write(text + "\n")
            self.out.flush()

    def end(self) -> None:
        """Finish the bar's line."""
        if self.tty and (self.done or self.total):
            self.out.write("\n")


def _drive(
    argv: Sequence[str], env: dict[str, str], out: TextIO, on_line: dict[str, str]
) -> tuple[int, list[str]]:
    """Run the script, answer nothing, show progress; returns exit status and other lines."""
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, close_fds=True
    )
    assert proc.stdout is not None
    progress = Progress(out)
    lines: list[str] = []
    try:
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            if progress.line(text):
                continue
            lines.append(text)
            for prefix, message in on_line.items():
                if text.lower().startswith(prefix):
                    progress.end()
                    out.write(message.format(line=text, rest=text[len(prefix) :].strip()) + "\n")
                    out.flush()
    except BaseException:
        with cleanup_shield():  # Ctrl-C or a broken terminal: the script goes with us
            kill_tree(proc.pid)
            proc.wait()
        raise
    progress.end()
    return proc.wait(), lines


def _safe_above(path: str) -> None:
    """Given an existing directory, raises ConfigError unless it and every directory above
    it can be changed only by root or us (group/other-writable only with the sticky bit
    of a root-owned directory, as /tmp): else another user could swap our directory for a
    symlink to anywhere."""
    me = os.geteuid()
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    for i in range(1, len(parts) + 1):
        d = os.sep.join(parts[:i]) or os.sep
        st = os.lstat(d)
        sticky = st.st_mode & stat.S_ISVTX and st.st_uid == 0
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not sticky):
            raise ConfigError(
                f"{d} (above the joiner's directory) can be changed by another user "
                f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); choose another place"
            )


def own_directory(path: str) -> str:
    """Given the manual joiner's --datadir, returns its absolute path: made here (0700) if
    missing, else a directory of ours that nobody else may write, and empty. Raises
    ConfigError otherwise (another user's directory could hold planted symlinks named
    like our files; a live datadir must never be received into)."""
    path = os.path.abspath(path)
    if os.path.isdir(path) and not os.path.islink(path) and os.listdir(path):
        raise ConfigError(
            f"{path} is not empty: a manual joiner only receives into an "
            "empty directory, never into a live datadir"
        )
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ConfigError(f"{parent} does not exist: make it first (the joiner makes {path})")
    _safe_above(parent)
    try:
        os.mkdir(path, 0o700)
        return path
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} is not a directory (a symlink or a file); refusing it")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"{path} belongs to another user or others may write it (owner uid "
            f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): a manual joiner only receives "
            "into a directory of its own; give a new path and it makes one"
        )
    if os.listdir(path):  # filled since the first look
        raise ConfigError(f"{path} is not empty: a manual joiner only receives into an empty one")
    return path


def joiner(
    *, method: str, address: str, datadir: str, defaults_file: str, out: TextIO = sys.stdout
) -> int:
    """Receive a state into an empty directory (made here, 0700, if missing)."""
    datadir = own_directory(datadir)
    argv = [
        _script(method),
        "--role",
        "joiner",
        "--address",
        address,
        "--datadir",
        datadir,
        "--parent",
        str(os.getpid()),
        "--progress",
        "1",
    ]
    if defaults_file:
        argv[5:5] = ["--defaults-file", defaults_file]
    hint = (
        "ready: on the donor, run\n  galera-sst donor --method "
        + method
        + " --address '{rest}' --datadir <its datadir> --socket <its socket>"
        + (" --defaults-file <its my.cnf>" if defaults_file else "")
    )
    code, lines = _drive(argv, dict(os.environ), out, {"ready": hint})
    coords = [ln for ln in lines if not ln.lower().startswith("ready")]
    if code == 0 and coords:
        out.write(f"received state {coords[-1]} into {datadir}\n")
    else:
        out.write(f"the joiner failed (exit {code}); its log lines are above\n")
    return code if code else (0 if coords else 32)


def donor(
    *,
    method: str,
    address: str,
    datadir: str,
    socket: str,
    defaults_file: str,
    gtid: str = ZERO_GTID,
    out: TextIO = sys.stdout,
) -> int:
    """Send from a running server to a manual (or real) joiner."""
    env = dict(os.environ)
    auth, sep, plain = address.rpartition("@")
    if sep:
        env["WSREP_SST_OPT_REMOTE_AUTH"] = auth  # not on the script's command line
    argv = [
        _script(method),
        "--role",
        "donor",
        "--address",
        plain,
        "--socket",
        socket,
        "--datadir",
        datadir,
        "--gtid",
        gtid,
        "--gtid-domain-id",
        "0",
        "--progress",
        "1",
    ]
    if defaults_file:
        argv[3:3] = ["--defaults-file", defaults_file]
    if MethodName.parse(method).family == "rsync":
        out.write(
            "rsync's donor needs mariadbd's FLUSH TABLES WITH READ LOCK: this manual run "
            "sends only the completion file, which proves the TLS path\n"
        )
        argv.append("--bypass")
    code, lines = _drive(argv, env, out, {"done": "done: the joiner has the state ({rest})"})
    if code == 0 and not any(ln.lower().startswith("done") for ln in lines):
        return 32
    return code
