"""The joiner's datadir: staging, the swap after the new copy is proven, binlogs, markers.

The live datadir is not touched until the transfer is complete and verified: the donor
writes into a staging directory on the same filesystem, and only then are entries renamed
into place. A failure before the swap leaves the old datadir and its grastate.dat as they were.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sst import log
from sst.errors import NoSpace, TransferError, from_oserror
from sst.process.pidfile import replace_file

STAGING = ".sst-staging"
BASIS = ".sst-basis"  # the rsync joiner's staging onto hard links of its old files
KEPT = ".sst-kept"  # a failed rsync transfer's data, kept for the next SST (sst/resume.py)
OLD = ".sst-old"
JOURNAL = ".sst-swap.journal"  # the swap's plan and state (sst/swap.py)
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


# The rsync joiner's listeners write their pids here; any joiner clears them when stale.
STUNNEL_PID = "stunnel.pid"
RSYNC_PID = "rsync_sst.pid"

TRANSIENT = (
    IN_PROGRESS,
    SST_PID,
    STAGING,
    BASIS,
    OLD,
    JOURNAL,
    ".sst",
    "rsync_sst_complete",
    "wsrep_sst_binlog.tar",
    STUNNEL_PID,
    RSYNC_PID,
    "tables_flushed",
    "sst_error",
)

# Top-level names of the datadir that a transfer never replaces or deletes.
PROTECTED_TOP = (
    STAGING,
    BASIS,
    KEPT,  # not TRANSIENT: it outlives a failed SST on purpose, until it expires or is used
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


def staging_for(datadir: str, live: str, name: str = STAGING) -> str:
    """Where a live directory is staged (in the staging called name): inside the datadir's
    staging if it is under it."""
    root = os.path.join(datadir, name)
    if live == datadir:
        return root
    rel = os.path.relpath(live, datadir)
    if not rel.startswith(".."):
        return os.path.join(root, rel)
    return os.path.join(live, name)


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


# Which live files a basis takes: given a file's path and whether it is at an area's top.
LinkFilter = Callable[[str, bool], bool]


def link_basis(
    areas: Sequence[Area], kept: str, *, live: bool, keep: LinkFilter | None = None
) -> None:
    """Fill prepared (empty) stagings with hard links, the basis rsync reconstructs from:
    first the tree at kept (a failed transfer's data, mirroring the main staging; '' for
    none), then, when live, each area's live files not linked yet, those that keep (given
    the file's path and whether it is at an area's top) accepts. A file that cannot be
    linked, or is not accepted, is left out (it then crosses the wire whole)."""
    if kept:
        _link_tree(kept, areas[0].staged, top=True)
    if live:
        for a in areas:
            _link_tree(a.live, a.staged, top=True, keep=keep)


def _grastate(datadir: str) -> str:
    try:
        with open(os.path.join(datadir, "grastate.dat"), encoding="utf-8", errors="replace") as f:
            return f.read(4096)
    except OSError:
        return ""


def grastate_uuid(datadir: str) -> str:
    """The cluster UUID grastate.dat names (lower case); '' when the file is missing or
    unreadable, or names none (all zeros)."""
    m = re.search(r"^uuid:\s*([0-9a-fA-F-]{36})\s*$", _grastate(datadir), re.MULTILINE)
    uuid = m.group(1).lower() if m else ""
    return "" if not uuid or set(uuid) <= {"0", "-"} else uuid


def _link_tree(src: str, dst: str, *, top: bool = False, keep: LinkFilter | None = None) -> None:
    for entry in os.scandir(src):
        if top and (
            entry.name in PROTECTED_TOP or entry.name in TRANSIENT or entry.name.startswith(".sst")
        ):
            continue  # never ours in the staging: the swap would refuse them (sst/swap.py)
        target = os.path.join(dst, entry.name)
        if entry.is_dir(follow_symlinks=False):
            if top or not os.path.exists(target):
                os.makedirs(target, exist_ok=True)
                shutil.copystat(entry.path, target)
            _link_tree(entry.path, target, keep=keep)
        elif (
            entry.is_file(follow_symlinks=False)
            and not os.path.exists(target)
            and (keep is None or keep(entry.path, top))
        ):
            with contextlib.suppress(OSError):
                os.link(entry.path, target)


def remove_staging(areas: Iterable[Area]) -> None:
    """Remove the staging directories (received data only; cleanup on every exit path).

    Never touches an aside directory (`.sst-old`): it may hold live entries, and only the
    swap's journal knows (see swap.recover)."""
    for a in areas:
        if os.path.lexists(a.staged):
            shutil.rmtree(a.staged, ignore_errors=True)


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

    def own(self, path: str) -> bool:
        """True for this server's binlog files: `<base>.NNNNNN` (digits) in its directory."""
        prefix = os.path.basename(self.base) + "."
        name = os.path.basename(path)
        return (
            os.path.dirname(path) == self.directory
            and name.startswith(prefix)
            and name[len(prefix) :].isdigit()
        )

    def remove_all(self, datadir: str) -> None:
        """Delete the `<base>.NNNNNN` files of the binlog directory and the index file.

        Nothing else is deleted, whatever the index lists: its other entries (absolute
        paths elsewhere, `..`) are ignored with a warning.
        """
        strays = [p for p in self.listed(datadir) if not self.own(p)]
        if strays:
            log.warning(
                f"{self.index} lists {len(strays)} path(s) that are not this server's binlogs "
                f"in {self.directory} (e.g. {strays[0]!r}); left alone"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.index)
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                if self.own(path) and not os.path.isdir(path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def write_index(self, names: Sequence[str]) -> None:
        """Rebuild the index from the restored file names (full paths, as stock writes)."""
        os.makedirs(os.path.dirname(self.index), exist_ok=True)
        text = "".join(os.path.join(self.directory, n) + "\n" for n in names)
        replace_file(self.index, text.encode("utf-8", "surrogateescape"), None)


# A binlog file's name as a donor may send it: a plain basename ending in digits; and an index.
BINLOG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.[0-9]{6,}")
BINLOG_INDEX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.index")


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


STAGING_MB = ".sst"  # mariabackup's staging directory name (stock)


def first_foreign_entry(root: str) -> str:
    """Given a received tree, the first entry no datadir holds (a device, FIFO or socket,
    or a regular file with a set-user/group-id bit), or '' when there is none. Symlinks
    are not followed."""
    found = foreign_entries(root)
    return found[0] if found else ""


def foreign_entries(root: str, since: float = 0.0, *, first_only: bool = True) -> list[str]:
    """Given a tree, its entries no datadir holds (see first_foreign_entry) whose inode
    changed at or after `since` (a time.time(); an in-place joiner's live datadir holds
    the server's own older entries, a socket perhaps); only the first unless first_only
    is False."""
    out: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # a live datadir's file went away meanwhile
                continue
            if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode) or st.st_ctime < since:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                out.append(path)
                if first_only:
                    return out
    return out
