"""The joiner's staging policy (`[sst] staging`): receive into a second copy and swap it in
(`always`), or write over the old datadir as the stock rsync script does (`in-place`), or
stage while the datadir's filesystem has room for the incoming copy and else go in place
(`auto`, the default).

In place, the old datadir is gone from the first byte on, so a failed or killed SST must
never be taken for data:

- `grastate.dat` is rewritten before the first byte with the zero UUID, seqno -1 and
  `safe_to_bootstrap: 0`: Galera asks for a full SST on the next start and refuses to
  bootstrap a cluster from it;
- `sst_in_progress` holds `in-place` and stays after a failure or a kill (a staged SST
  removes it on every exit): `galera-sst check` and the next joiner name the debris;
- rsync: the redo log (`ib_logfile0`) is received beside the datadir and renamed in last,
  so until the SST is complete the datadir has no redo log and InnoDB refuses to start on
  it (`File ./ib_logfile0 was not found`), `mariadbd --wsrep-recover` included;
- mariabackup: the old datadir is removed before receiving; the new copy is moved in only
  after prepare, as when staging.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from dataclasses import dataclass

from sst import log
from sst.datadir import IN_PROGRESS, PROTECTED_TOP, TRANSIENT, free_bytes, remove, touch
from sst.process.pidfile import read_small, replace_file

AUTO = "auto"
ALWAYS = "always"
IN_PLACE = "in-place"
POLICIES = (AUTO, ALWAYS, IN_PLACE)

GRASTATE = "grastate.dat"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
IN_PLACE_MARK = b"in-place\n"  # the content of sst_in_progress during an in-place SST

# What a transfer carries besides the database directories (rsync's sub-modules, the
# InnoDB and Aria files mariadb-backup copies): top-level names counted in the estimate.
CARRIED_TOP = re.compile(r"(ibdata.*|ib_logfile0|undo[0-9]+|aria_log.*|ib_lru_dump)")


def margin(estimate: int) -> int:
    """Room kept free beyond the incoming copy: a tenth of it, at least 16 MiB (the server
    and its logs go on writing while the copy arrives)."""
    return max(estimate // 10, 16 << 20)


@dataclass(frozen=True)
class Decision:
    """Whether to stage, and why (one line, with the figures)."""

    stage: bool
    reason: str

    @property
    def mode(self) -> str:
        """`staged` or `in-place`, as the log and the status file say."""
        return "staged" if self.stage else IN_PLACE


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB ({n} bytes)"


def decide(policy: str, free: int, estimate: int, *, empty: bool) -> Decision:
    """Given the policy, the free bytes of the datadir's filesystem, the estimated bytes of
    the incoming copy and whether the datadir holds no data yet; returns the decision.
    Raises ValueError for an unknown policy (the settings loaders refuse it first)."""
    figures = f"{_mib(free)} free, incoming copy estimated at {_mib(estimate)}"
    if policy == ALWAYS:
        return Decision(True, f"staging=always ({figures})")
    if policy == IN_PLACE:
        return Decision(False, f"staging=in-place ({figures})")
    if policy != AUTO:
        raise ValueError(f"unknown staging policy {policy!r}")
    if empty:
        return Decision(True, "staging=auto: the datadir holds no data yet, nothing to keep")
    need = estimate + margin(estimate)
    if free >= need:
        return Decision(True, f"staging=auto: room for a second copy ({figures})")
    return Decision(
        False,
        f"staging=auto: no room for a second copy ({figures}, {_mib(need)} needed with "
        "the margin): receiving in place",
    )


def _size_tree(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total


def _ours(name: str) -> bool:
    return name in TRANSIENT or name in PROTECTED_TOP or name.startswith(".sst")


def old_copy_bytes(dirs: list[str]) -> int:
    """Given the live directories (datadir first, then the separate InnoDB/Aria ones);
    returns the bytes of the old copy a transfer would replace: the database directories
    and the InnoDB/Aria files at their top (not galera.cache, logs, binlogs or ours)."""
    total = 0
    for d in dict.fromkeys(dirs):
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if _ours(e.name):
                continue
            if e.is_dir(follow_symlinks=False):
                total += _size_tree(e.path) if d == dirs[0] else 0
            elif e.is_file(follow_symlinks=False) and CARRIED_TOP.fullmatch(e.name):
                try:
                    total += e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


def for_datadir(policy: str, dirs: list[str], announced: int = 0) -> tuple[Decision, int]:
    """The decision for this joiner: the estimate is what the donor announced (bytes, 0:
    none), else the old copy's size; returns it with the estimate."""
    old = old_copy_bytes(dirs)
    estimate = announced or old
    return decide(policy, free_bytes(dirs[0]), estimate, empty=old == 0), estimate


def failed_in_place(datadir: str) -> bool:
    """Whether the datadir holds the debris of an in-place SST that did not finish."""
    try:
        return read_small(os.path.join(datadir, IN_PROGRESS)) == IN_PLACE_MARK
    except OSError:
        return False


def begin(datadir: str) -> None:
    """Create this run's sst_in_progress; the debris of a failed in-place SST keeps its
    `in-place` mark until an SST succeeds."""
    if not failed_in_place(datadir):
        touch(os.path.join(datadir, IN_PROGRESS))


def end(datadir: str, *, done: bool) -> None:
    """Remove sst_in_progress, unless the run failed and the datadir holds in-place debris
    (this run's or an earlier one's)."""
    if done or not failed_in_place(datadir):
        remove(os.path.join(datadir, IN_PROGRESS))


def mark_in_place(datadir: str) -> None:
    """Mark the datadir as written in place (sst_in_progress says `in-place`), fsynced."""
    replace_file(os.path.join(datadir, IN_PROGRESS), IN_PLACE_MARK, None, sync=True)
    fsync_dir(datadir)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def invalidate_grastate(datadir: str) -> bytes:
    """Rewrite grastate.dat as a node without state has it (zero UUID, seqno -1, not safe
    to bootstrap), fsynced; returns the old content (b'' if there was none or it was not a
    regular file) so an IST can put it back.

    The running mariadbd holds grastate.dat open and Galera rewrites it through that
    descriptor when it has joined: a new file renamed over it would be an inode Galera never
    writes again, and the zero state would outlive a successful join. So an existing regular
    file is rewritten in place (opened with O_NOFOLLOW, never created or followed through a
    link); anything else (missing, a symlink, a FIFO) is replaced by a new private file
    renamed into place (pidfile.replace_file)."""
    path = os.path.join(datadir, GRASTATE)
    try:
        old = read_small(path)  # a symlink or FIFO is refused here, never followed
    except OSError:
        old = b""
    version = re.search(rb"^version:\s*(\S+)", old, re.M)
    text = (
        "# GALERA saved state\n"
        f"version: {version.group(1).decode('ascii', 'replace') if version else '2.1'}\n"
        f"uuid:    {ZERO_UUID}\n"
        "seqno:   -1\n"
        "safe_to_bootstrap: 0\n"
    )
    _rewrite(path, text.encode("ascii"))
    return old


def restore_grastate(datadir: str, old: bytes) -> None:
    """Put grastate.dat back as invalidate_grastate found it (an IST kept the data)."""
    if old:
        _rewrite(os.path.join(datadir, GRASTATE), old)


def _rewrite(path: str, data: bytes) -> None:
    """Given a path and its new content: an existing regular file is overwritten in place
    (the same inode, truncated, fsynced); otherwise a new 0660 file is renamed there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:  # missing, or a symlink (ELOOP)
        fd = -1
    if fd >= 0:
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
                os.fsync(fd)
                return
        finally:
            os.close(fd)
    replace_file(path, data, 0o660, sync=True)
    folder = os.path.dirname(path)
    if os.geteuid() == 0:  # the server (the datadir's owner) rewrites it
        st = os.stat(folder)
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    fsync_dir(folder)


def remove_entry(path: str) -> None:
    """Remove a file, symlink or directory tree (never following a link); gone is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def warn(decision: Decision, method: str) -> None:
    """The one WARNING line of an in-place SST (INFO when staging)."""
    if decision.stage:
        log.info(f"Staging the incoming copy: {decision.reason}")
        return
    log.warning(
        f"{method} SST in place: {decision.reason}; the old datadir is overwritten from "
        "the first byte, so a failed SST leaves no usable data (grastate.dat is invalidated "
        "until it succeeds)"
    )
