"""The joiner's datadir: staging, the swap after the new copy is proven, binlogs, markers.

The live datadir is not touched until the transfer is complete and verified: the donor
writes into a staging directory on the same filesystem, and only then are entries renamed
into place. A failure before the swap leaves the old datadir and its grastate.dat as they were.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sst.errors import NoSpace, TransferError, from_oserror
from sst.process.pidfile import replace_file

STAGING = ".sst-staging"
OLD = ".sst-old"
IN_PROGRESS = "sst_in_progress"
SST_PID = "wsrep_sst.pid"


# Everything an SST may create in a datadir and must remove on every exit path.
def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on path's filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


FULL = 1 << 20  # under this much free space a receiving filesystem counts as full


class DiskWatch:
    """Notices that the receiving filesystem filled up: a tool said "No space left on device"
    (it then deletes its partial file, so free space alone would miss it), or free space is
    below FULL. Feed watch() with the receiving tools' stderr lines; call check() often."""

    def __init__(self) -> None:
        self.seen = ""

    def watch(self, line: str) -> None:
        """on_line callback for a receiving tool."""
        if not self.seen and ("No space left on device" in line or "Errcode: 28" in line):
            self.seen = line.strip()[-200:]

    def check(self, path: str) -> None:
        """Raise NoSpace if the filesystem of path is, or was, full."""
        free = free_bytes(path)
        if self.seen or free < FULL:
            raise NoSpace(
                f"the datadir's filesystem filled up while receiving ({free // 2**20} MiB "
                "free now); the old datadir is kept: free space, or move the datadir to a "
                "larger filesystem"
            )


TRANSIENT = (
    IN_PROGRESS,
    SST_PID,
    STAGING,
    OLD,
    ".sst",
    "rsync_sst_complete",
    "wsrep_sst_binlog.tar",
    "stunnel.pid",
    "rsync_sst.pid",
    "tables_flushed",
    "sst_error",
)

# Top-level names of the datadir that a transfer never replaces or deletes.
PROTECTED_TOP = (
    STAGING,
    OLD,
    "lost+found",
    ".zfs",
    ".snapshot",
    ".fseventsd",
    ".Trashes",
    "galera_sst_status.json",
)


def resolve(datadir: str, path: str) -> str:
    """A server directory option, relative to the datadir, normalised; '' means datadir."""
    if not path:
        return datadir
    full = path if os.path.isabs(path) else os.path.join(datadir, path)
    return os.path.normpath(full)


@dataclass(frozen=True)
class Area:
    """One directory the transfer fills: the live directory and where it is staged."""

    live: str
    staged: str
    patterns: tuple[str, ...] = ()  # top-level files this area carries ('' = everything)


def staging_for(datadir: str, live: str) -> str:
    """Where a live directory is staged: inside the datadir's staging if it is under it."""
    root = os.path.join(datadir, STAGING)
    if live == datadir:
        return root
    rel = os.path.relpath(live, datadir)
    if not rel.startswith(".."):
        return os.path.join(root, rel)
    return os.path.join(live, STAGING)


def prepare_staging(areas: Sequence[Area], *, hardlink_from_live: bool) -> None:
    """Create empty staging dirs (removing stale ones); optionally hard-link the old files in
    so rsync can send deltas (rsync replaces a file by rename, never writing shared inodes)."""
    for a in areas:
        if os.path.lexists(a.staged):
            shutil.rmtree(a.staged)
    for a in areas:
        os.makedirs(a.staged, exist_ok=True)
    if hardlink_from_live:
        for a in areas:
            _link_tree(a.live, a.staged, top=True)


def _link_tree(src: str, dst: str, *, top: bool = False) -> None:
    for entry in os.scandir(src):
        if top and entry.name in PROTECTED_TOP:
            continue
        target = os.path.join(dst, entry.name)
        if entry.is_dir(follow_symlinks=False):
            if top or not os.path.exists(target):
                os.makedirs(target, exist_ok=True)
                shutil.copystat(entry.path, target)
            _link_tree(entry.path, target)
        elif entry.is_file(follow_symlinks=False) and not os.path.exists(target):
            with contextlib.suppress(OSError):
                os.link(entry.path, target)


def remove_staging(areas: Iterable[Area]) -> None:
    """Remove staging and half-swapped leftovers (cleanup on every exit path)."""
    for a in areas:
        if os.path.lexists(a.staged):
            shutil.rmtree(a.staged, ignore_errors=True)
        old = os.path.join(a.live, OLD)
        if os.path.lexists(old):
            shutil.rmtree(old, ignore_errors=True)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def swap_in(area: Area, *, skip: Sequence[str], replace_dirs: bool) -> int:
    """Rename staged entries over the live ones; return how many entries moved.

    Top-level files of the live directory are kept unless the staging has a replacement
    (grastate.dat, galera.cache, *.pem, logs stay, as with the stock script). With
    replace_dirs, live top-level directories that the donor does not have are removed
    (a dropped database).
    """
    old = os.path.join(area.live, OLD)
    os.makedirs(old, exist_ok=True)
    staged_names = set()
    moved = 0
    for entry in sorted(os.listdir(area.staged)):
        src = os.path.join(area.staged, entry)
        if entry in skip or entry in PROTECTED_TOP:
            continue
        if os.path.isdir(src) and not os.path.islink(src) and area.patterns:
            continue  # a nested area's staging; swapped on its own
        staged_names.add(entry)
        dst = os.path.join(area.live, entry)
        if os.path.lexists(dst):
            os.rename(dst, os.path.join(old, entry))
        os.rename(src, dst)
        moved += 1
    if replace_dirs:
        for entry in os.listdir(area.live):
            path = os.path.join(area.live, entry)
            if entry in staged_names or entry in PROTECTED_TOP:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                os.rename(path, os.path.join(old, entry))
    shutil.rmtree(old, ignore_errors=True)
    return moved


@dataclass(frozen=True)
class Binlogs:
    """Binary log names of the joiner: base (may be relative to the datadir) and index."""

    base: str  # e.g. /var/lib/mysql/mysql-bin or mysql-bin
    index: str  # full path of the index file

    @classmethod
    def from_settings(
        cls, datadir: str, log_bin: str | None, index: str, basename: str
    ) -> Binlogs | None:
        """None when binary logging is off; default names as the server picks them."""
        if log_bin is None:
            return None
        base = log_bin or (f"{basename}-bin" if basename else "mysql-bin")
        base = resolve(datadir, base)
        if base.endswith(".index"):
            base = base[: -len(".index")]
        idx = index or f"{base}.index"
        idx = resolve(datadir, idx)
        if not os.path.splitext(idx)[1]:
            idx += ".index"
        return cls(base, idx)

    @property
    def directory(self) -> str:
        """Where the binlog files live."""
        return os.path.dirname(self.base)

    def listed(self, datadir: str) -> list[str]:
        """Full paths of the files the index lists (relative entries are datadir-relative)."""
        try:
            with open(self.index, encoding="utf-8", errors="surrogateescape") as f:
                names = [ln.strip() for ln in f if ln.strip()]
        except FileNotFoundError:
            return []
        return [resolve(datadir, n) for n in names]

    def remove_all(self, datadir: str) -> None:
        """Delete the binlogs in the index, the index, and unindexed `<base>.NNNNNN` files."""
        for path in self.listed(datadir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.index)
        prefix = os.path.basename(self.base) + "."
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.startswith(prefix) and name[len(prefix) :].isdigit():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.directory, name))

    def write_index(self, names: Sequence[str]) -> None:
        """Rebuild the index from the restored file names (full paths, as stock writes)."""
        os.makedirs(os.path.dirname(self.index), exist_ok=True)
        text = "".join(os.path.join(self.directory, n) + "\n" for n in names)
        replace_file(self.index, text.encode("utf-8", "surrogateescape"), None)


def touch(path: str) -> None:
    """Create an empty marker file (a new file renamed into place: a symlink planted at
    path is replaced, never followed)."""
    replace_file(path, b"", None)


def remove(path: str) -> None:
    """Remove a file if present."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def ensure_dir(path: str) -> None:
    """Create a directory (and parents); errors name the path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:  # a contract errno (ENOENT, EACCES, ENOSPC), not any errno
        raise from_oserror(exc, f"cannot create directory '{path}'") from None


def read_magic(path: str) -> tuple[str, dict[str, str]]:
    """The completion file: line 1 (the state) and its `tag value` lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise TransferError(
            f"the donor's completion file {os.path.basename(path)} is missing"
        ) from None
    if not lines:
        raise TransferError(f"the donor's completion file {os.path.basename(path)} is empty")
    tags: dict[str, str] = {}
    for ln in lines[1:]:
        tag, _, value = ln.strip().partition(" ")
        if tag:
            tags.setdefault(tag, value.strip())
    return lines[0].strip(), tags


@dataclass
class Aside:
    """Depth-1 entries of live directories renamed into `<dir>/.sst-old`, kept until the new
    copy is in place: `restore()` puts them back, `discard()` deletes them."""

    dirs: list[str]
    keep: Callable[[str], bool]

    def restore(self) -> None:
        """Remove what arrived since, and rename the old entries back."""
        for d in self.dirs:
            old = os.path.join(d, OLD)
            if not os.path.isdir(old):
                continue
            for name in os.listdir(d):
                path = os.path.join(d, name)
                if name in PROTECTED_TOP or name == STAGING_MB or self.keep(path):
                    continue
                _remove_any(path)
            for name in os.listdir(old):
                os.rename(os.path.join(old, name), os.path.join(d, name))
            os.rmdir(old)

    def discard(self) -> None:
        """The new copy is in place: delete the old entries."""
        for d in self.dirs:
            shutil.rmtree(os.path.join(d, OLD), ignore_errors=True)


STAGING_MB = ".sst"  # mariabackup's staging directory name (stock)


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def set_aside(dirs: Sequence[str], keep: Callable[[str], bool]) -> Aside:
    """Rename every depth-1 entry of dirs that keep() does not protect into `<dir>/.sst-old`.

    Renames stay on the same filesystem, so this is fast and nothing is copied.
    """
    aside = Aside([], keep)
    for d in dict.fromkeys(dirs):
        if not os.path.isdir(d):
            continue
        old = os.path.join(d, OLD)
        if os.path.lexists(old):
            shutil.rmtree(old)
        os.mkdir(old)
        aside.dirs.append(d)
        for name in os.listdir(d):
            path = os.path.join(d, name)
            if name in PROTECTED_TOP or name == STAGING_MB or keep(path):
                continue
            os.rename(path, os.path.join(old, name))
    return aside


def first_foreign_entry(root: str) -> str:
    """Given a received tree, the first entry no datadir holds (a device, FIFO or socket,
    or a regular file with a set-user/group-id bit), or '' when there is none. Symlinks
    are not followed."""
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode) or mode & (stat.S_ISUID | stat.S_ISGID):
                return path
    return ""
