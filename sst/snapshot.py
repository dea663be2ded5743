"""What changed in a donor's directory tree since a moment: the rsync donor's pre-copy
(docs/contract.md 6.2, "Pre-copy").

The donor records the stat of every file one rsync pass carries at t0, just before the
pre-copy reads them without the read lock; under the lock it records them again and re-sends
only the files that may differ from what the pre-copy read. A file counts as unchanged only
when the path still names the same inode with the same size, mtime and ctime as at t0, and
both times lie before t0 minus MARGIN_NS. The second condition is the one that matters: a
write or truncation sets mtime and ctime, a rename, chmod or link count change sets ctime,
and no user can set ctime back (utime() sets it to now). The first catches what times alone
would miss (a rename on a filesystem that keeps the ctime, a clock stepped back).

Why a margin: file timestamps come from the kernel's coarse clock (ticks of 1 to 10 ms, whole
seconds on filesystems with second timestamps), which runs up to a tick behind the clock t0 is
read from; a write just after t0 can carry a time just before it. The margin also absorbs a
small step of the wall clock. The clock assumption: the donor's clock, as its filesystem
stamps files, is not set back by more than the margin during the SST.

Directories are recorded too: a tree whose directories did not change since t0 gained or lost
no entry, so its deletion pass can be skipped.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MARGIN_NS = 2_000_000_000  # 2 s: above a coarse tick and a whole-second timestamp


@dataclass(frozen=True, slots=True)
class Entry:
    """What identifies one version of a file: inode, type and permissions, size, times."""

    dev: int
    ino: int
    mode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Entry:
        """Given an lstat result; returns its entry."""
        return cls(st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def before(self, since_ns: int) -> bool:
        """Neither mtime nor ctime is at or after since_ns."""
        return max(self.mtime_ns, self.ctime_ns) < since_ns


@dataclass(frozen=True)
class Snapshot:
    """One pass's files (every non-directory, by path relative to the pass's root) and the
    directories they sit in ('' is the root itself)."""

    files: Mapping[str, Entry] = field(default_factory=dict)
    dirs: Mapping[str, Entry] = field(default_factory=dict)

    def size(self, paths: Iterable[str]) -> int:
        """The total size of the given files as this snapshot saw them."""
        return sum(self.files[p].size for p in paths)


def scan(
    root: str,
    *,
    patterns: Sequence[str] = (),
    recursive: bool = False,
    only: Sequence[str] = (),
    skip: Iterable[tuple[int, int]] = (),
) -> Snapshot:
    """Given a pass's root directory and its selection: every entry directly in root whose
    name matches one of patterns (rsync's `+ /pattern`, fnmatch rules for these plain
    patterns), or is named in only, or, recursively, every entry under root; skip holds
    (dev, ino) pairs never listed (the redo log, which goes in its own pass). Returns the
    snapshot; a root that does not exist gives an empty one. Entries that vanish while
    being read are left out (they are gone: the deletion pass deals with them)."""
    files: dict[str, Entry] = {}
    dirs: dict[str, Entry] = {}
    avoid = set(skip)
    try:
        dirs[""] = Entry.of(os.stat(root))
    except FileNotFoundError:
        return Snapshot()
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel) if rel else root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            if not recursive and not (
                e.name in only or any(fnmatch.fnmatchcase(e.name, p) for p in patterns)
            ):
                continue
            try:
                entry = Entry.of(e.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(entry.mode):
                if recursive:
                    dirs[path] = entry
                    pending.append(path)
            elif (entry.dev, entry.ino) not in avoid:
                files[path] = entry
    return Snapshot(files, dirs)


def changed_files(before: Snapshot | None, now: Snapshot, since_ns: int) -> list[str]:
    """Given the snapshot at t0 (None: the pass was not there), the one now, and t0 minus
    the margin in ns: the paths of now that must be sent again, sorted (rsync walks a sorted
    list fastest). A path is left out only if it held the same entry at t0 and its times
    are older than since_ns."""
    old = before.files if before is not None else {}
    return sorted(p for p, e in now.files.items() if not (old.get(p) == e and e.before(since_ns)))


def tree_changed(before: Snapshot | None, now: Snapshot, since_ns: int) -> bool:
    """Whether a directory of the tree gained, lost or renamed an entry since t0 (or the
    tree is new, or a directory appeared or went): its deletion pass must run."""
    if before is None or before.dirs.keys() != now.dirs.keys():
        return True
    return any(not (before.dirs[p] == e and e.before(since_ns)) for p, e in now.dirs.items())
