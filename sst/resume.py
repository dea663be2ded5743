"""A failed rsync transfer's data, kept for the next SST to resume from (README, "Stale
joiners and resume").

Our donor sends its origin file (rs.ORIGIN_FILE: its `uuid:seqno`) first. When the joiner
fails after it arrived, the staging that received it is renamed to `<datadir>/.sst-kept`
(0700, the node's user; a name beginning with a dot, one level above any database
directory: no server start takes its files for InnoDB data, though a server started on the
datadir lists it as database `#mysql50#.sst-kept`, and sst/swap.py and the lists in
sst/datadir.py treat it as galera-sst's own) with a marker naming the cluster and the
donor's position. The next SST whose donor belongs to that cluster uses it as the basis;
any successful joiner, whatever its method, removes it (sst/methods/joiner.py). It expires
after sst-resume-max-age seconds, and whenever its file system is under MIN_FREE free. Only
the datadir's staging is kept: files of separate InnoDB/Aria directories outside the
datadir are sent again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass

from sst import log
from sst.datadir import KEPT
from sst.process.pidfile import read_small, replace_file
from sst.status import printable
from sst.tools.rsync import ORIGIN_FILE, cluster_uuid

MARKER = ".sst-kept.json"  # inside the kept directory
DEFAULT_MAX_AGE = 86400.0  # sst-resume-max-age's default (sst/options.py)
MIN_FREE = 0.10  # a kept transfer is dropped when its file system has less free than this
# The donor's position as its origin file and the marker carry it: `uuid:seqno`.
POSITION = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:-?[0-9]{1,19}")


@dataclass(frozen=True)
class Kept:
    """What a kept transfer's marker says."""

    uuid: str  # the donor's cluster
    position: str  # the donor's `uuid:seqno` when it started sending
    kept_at: float  # time.time() when it was kept
    size: int  # bytes of the files it holds (hard links to live files count too)


def path(datadir: str) -> str:
    """Where a datadir's kept transfer lives."""
    return os.path.join(datadir, KEPT)


def tree_bytes(root: str) -> int:
    """The apparent size of the regular files under root (symlinks not followed)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_size
    return total


def read(datadir: str) -> Kept | None:
    """The kept transfer of datadir; None when there is none or its marker is unreadable."""
    try:  # never blocks on a FIFO, never reads more than a marker's size
        data = json.loads(read_small(os.path.join(path(datadir), MARKER), 4096))
        kept = Kept(
            str(data["uuid"]), str(data["position"]), float(data["kept_at"]), int(data["size"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    ok = cluster_uuid(kept.uuid) and POSITION.fullmatch(kept.position)
    return kept if ok else None


def drop(datadir: str, why: str) -> None:
    """Remove the kept transfer (if any), saying why in one INFO line."""
    p = path(datadir)
    if os.path.lexists(p):
        log.info(f"Removing the kept partial transfer {p}: {why}")
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(p)


def tight(datadir: str) -> bool:
    """Whether datadir's file system is too full to keep a partial transfer."""
    st = os.statvfs(datadir)
    return st.f_blocks > 0 and st.f_bavail < MIN_FREE * st.f_blocks


def expiry(kept: Kept | None, *, max_age: float, now: float, tight: bool) -> str:
    """Why a kept transfer must go ('' when it may stay), given its marker (None: missing or
    unreadable), sst-resume-max-age, the time and whether the disk is too full."""
    if kept is None:
        return "its marker is missing or unreadable"
    if max_age <= 0:
        return "sst-resume-max-age is 0"
    if now - kept.kept_at > max_age:
        return f"older than sst-resume-max-age ({max_age:g} s)"
    if tight:
        return f"its file system has less than {MIN_FREE:.0%} free"
    return ""


def usable(datadir: str, max_age: float) -> Kept | None:
    """The kept transfer the next SST may resume from; an expired one is removed first."""
    if not os.path.lexists(path(datadir)):
        return None
    kept = read(datadir)
    why = expiry(kept, max_age=max_age, now=time.time(), tight=tight(datadir))
    if why:
        drop(datadir, why)
        return None
    return kept


def keep(datadir: str, staged_root: str, max_age: float) -> bool:
    """After a failed transfer: rename the staging root that received our donor's origin file
    to the kept directory (replacing an older one) and write its marker; returns whether
    it was kept. Never raises (a failed keep only costs the next SST bandwidth)."""
    origin = os.path.join(staged_root, ORIGIN_FILE)
    try:
        position = read_small(origin, 256).decode("ascii", "replace").strip()
    except OSError:
        return False
    uuid = cluster_uuid(position)
    if not uuid or not POSITION.fullmatch(position) or max_age <= 0 or tight(datadir):
        return False
    target = path(datadir)
    try:
        if os.path.lexists(target):
            shutil.rmtree(target)
        os.rename(staged_root, target)
        os.chmod(target, 0o700)
        size = tree_bytes(target)
        marker = Kept(uuid, position, time.time(), size)
        replace_file(os.path.join(target, MARKER), json.dumps(asdict(marker)).encode(), None)
        st = os.stat(target)
        if os.geteuid() == 0:  # the node's user owns all of it
            os.chown(os.path.join(target, MARKER), st.st_uid, st.st_gid)
    except OSError as exc:
        log.warning(f"could not keep the partial transfer for a resume: {exc}")
        shutil.rmtree(target, ignore_errors=True)
        return False
    log.warning(
        f"Kept {size // 2**20} MiB that arrived from {position} in {target}: the next SST "
        f"from cluster {uuid} resumes from it (expires after {max_age:g} s)"
    )
    return True


def describe(datadir: str) -> str:
    """One line for `galera-sst status` about the kept transfer; '' when there is none."""
    where = printable(path(datadir))
    if not os.path.lexists(path(datadir)):
        return ""
    kept = read(datadir)
    if kept is None:
        return f"kept partial transfer: {where} (marker unreadable; removed at next SST)"
    age = max(0.0, time.time() - kept.kept_at)
    return (
        f"kept partial transfer: {kept.size // 2**20} MiB from {kept.position}, "
        f"{age / 60:.0f} min old, in {where} (resumes the next SST from this cluster)"
    )
