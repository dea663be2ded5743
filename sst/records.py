"""Records of an rsync SST, which let the next stale rejoin skip reading unchanged files
(docs/contract.md 6.2, "Skipping what both sides recorded").

Without them, a stale joiner's basis is compared by checksum: both sides read every file.
With them, a file is skipped unread when both sides can show it has not changed since the
SST that recorded it:

- the donor, at the end of each SST it gave to a joiner of ours, records every file the
  pre-copy found settled (snapshot.changed_files left it out: same inode, size, mtime and
  ctime at t0 and under the lock, times older than t0 minus the margin). The joiner's copy
  of such a file is the donor's content then. The record gets a random id, which the
  completion file carries to the joiner;
- the joiner, when that SST succeeded, records every file of its datadir as the swap left
  it, under the donor's id;
- at the next SST, the joiner links into its basis only the files whose stat is still the
  one it recorded (trusted) and announces the id; the donor skips the files whose stat is
  still the one its record of that id holds, and sends every other file. A file the joiner
  no longer trusts is not in its basis, so a skip leaves nothing stale behind: the donor
  sends what the joiner lacks.

A file's entry (snapshot.Entry) names one version of it: any write or truncation sets mtime
and ctime, a rename, chmod or link count change sets ctime, no user can set ctime, and a
file replaced is another inode. A record holds only:

- within one boot of its host (the kernel's boot id): after a crash, data written just
  before it may be on disk while the inode's times are not;
- with the same directories (the layout: which directory each rsync module maps to), so
  that a path means the same file to both sides;
- and while the wall clock was not set back by more than the margin since it was written
  (CLOCK_REALTIME against CLOCK_BOOTTIME): a write after such a step could stamp a recorded
  time again.

What it gives up: a file whose bytes changed with no change to its stat (a disk's silent
corruption) is not read, so an SST no longer replaces it; `[sst] rsync-records=0` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sst.snapshot import MARGIN_NS, Entry

PREFIX = ".sst-record-"  # files at the datadir's top: never sent, swapped or a basis
JOINER = PREFIX + "joiner.json"
DONOR_KEPT = 4  # donor records kept (the newest): one per joiner a donor serves in turn
NONE = "0" * 32  # a joiner that can keep a record but holds none
_ID = re.compile(r"[0-9a-f]{32}")
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
VERSION = 2


def boot_id() -> str:
    """This boot of the kernel; '' when it cannot be read (no record is then used)."""
    try:
        with open(_BOOT_ID, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def new_id() -> str:
    """A fresh record id (32 hex digits)."""
    return secrets.token_hex(16)


def valid_id(text: str) -> bool:
    """Whether text is a record id (NONE is not one)."""
    return _ID.fullmatch(text) is not None and text != NONE


def clock_offset() -> int:
    """The wall clock minus the time since boot (ns), that is when this boot began on the
    wall clock: constant while nobody sets the clock, smaller after it was set back."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Record:
    """One side's record of one SST: the donor's id; the boot, clock offset, cluster and
    layout (module key -> directory) it holds in; the entry of each file by absolute path."""

    id: str
    boot: str
    uuid: str
    layout: Mapping[str, str]
    files: Mapping[str, Entry]
    clock: int = field(default_factory=clock_offset)

    def holds(self, path: str, entry: Entry) -> bool:
        """Whether path still is the version recorded."""
        return self.files.get(path) == entry

    def to_json(self) -> str:
        files = {
            p: [e.dev, e.ino, e.mode, e.size, e.mtime_ns, e.ctime_ns] for p, e in self.files.items()
        }
        head = {"version": VERSION, "id": self.id, "boot": self.boot, "uuid": self.uuid}
        return json.dumps(
            {**head, "clock": self.clock, "layout": dict(self.layout), "files": files},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Record | None:
        """The record text holds, or None when it is not one (of this version)."""
        try:
            d = json.loads(text)
            if d.get("version") != VERSION or not valid_id(d["id"]):
                return None
            files = {str(p): Entry(*(int(x) for x in v)) for p, v in d["files"].items()}
            layout = {str(k): str(v) for k, v in d["layout"].items()}
            return cls(d["id"], str(d["boot"]), str(d["uuid"]), layout, files, int(d["clock"]))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return None


def _read(path: str) -> str:
    """The text of path when it is a regular file of this user ('' otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        st = os.fstat(f.fileno())
        mine = st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600
        if not stat.S_ISREG(st.st_mode) or not mine or st.st_nlink != 1:
            return ""
        try:
            return f.read()
        except OSError:
            return ""


def _write(path: str, text: str) -> None:
    """Replace path by a new 0600 file holding text (written aside, renamed)."""
    tmp = f"{path}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def donor_path(datadir: str, rid: str) -> str:
    return os.path.join(datadir, f"{PREFIX}donor-{rid}.json")


def why_not(rec: Record | None, uuid: str, layout: Mapping[str, str]) -> str:
    """Why rec does not hold now for cluster uuid and this layout ('' when it does)."""
    if rec is None:
        return "none readable"
    if not rec.boot or rec.boot != boot_id():
        return "written before the host restarted"
    if rec.uuid != uuid:
        return f"of cluster {rec.uuid}, not {uuid}"
    if dict(rec.layout) != dict(layout):
        return "its directories were configured differently"
    if clock_offset() < rec.clock - MARGIN_NS:
        return "the clock was set back since it was written"
    return ""


def load(path: str, uuid: str, layout: Mapping[str, str]) -> tuple[Record | None, str]:
    """The record at path when it holds now (why_not), and why not ('' when it does)."""
    rec = Record.from_json(_read(path))
    why = why_not(rec, uuid, layout)
    return (None, why) if why else (rec, "")


def _tidy(datadir: str) -> None:
    """Remove what a killed run left (`.tmp` files) and donor records of an earlier boot,
    then all but the DONOR_KEPT newest. Best effort: nothing here fails an SST."""
    boot = clock_offset()  # when this boot began, on the wall clock
    donors: list[tuple[int, str]] = []
    with contextlib.suppress(OSError):
        for e in os.scandir(datadir):
            if not e.name.startswith(PREFIX) or not e.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                mtime = e.stat(follow_symlinks=False).st_mtime_ns
                if e.name.endswith(".tmp") or (
                    e.name.startswith(PREFIX + "donor-") and mtime < boot
                ):
                    os.unlink(e.path)
                elif e.name.startswith(PREFIX + "donor-") and e.name.endswith(".json"):
                    donors.append((mtime, e.path))
    for _, path in sorted(donors)[:-DONOR_KEPT]:
        with contextlib.suppress(OSError):
            os.unlink(path)


def save_donor(datadir: str, rec: Record) -> None:
    """Keep the donor's record (and only the DONOR_KEPT newest of this boot)."""
    _write(donor_path(datadir, rec.id), rec.to_json())
    _tidy(datadir)


def save_joiner(datadir: str, rec: Record) -> None:
    """Replace the joiner's record."""
    _tidy(datadir)
    _write(os.path.join(datadir, JOINER), rec.to_json())


def wait_past(files: Mapping[str, Entry], dirs: list[str], timeout: float = 3.0) -> bool:
    """Wait until every file system holding files stamps times later than the newest time
    among them (a probe file in each of dirs shows it): a write after that cannot leave a
    file with its recorded times, whatever the timestamps' granularity (a clock tick, or a
    whole second on some file systems). False when that took longer than timeout."""
    newest: dict[int, int] = {}
    for e in files.values():
        newest[e.dev] = max(newest.get(e.dev, 0), e.mtime_ns, e.ctime_ns)
    deadline = time.monotonic() + timeout
    for d in dirs:
        probe = os.path.join(d, f"{PREFIX}probe.{secrets.token_hex(4)}.tmp")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                os.utime(fd)
                st = os.fstat(fd)
                if st.st_ctime_ns > newest.get(st.st_dev, 0):
                    break
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
        finally:
            os.close(fd)
            os.unlink(probe)
    return True


def scan_files(roots: list[str], skip_top: frozenset[str]) -> dict[str, Entry]:
    """Every regular file under each root (recursively, symlinks not followed; at a root's
    top, names in skip_top left out), by absolute path."""
    out: dict[str, Entry] = {}
    for root in dict.fromkeys(roots):
        pending = [(root, True)]
        while pending:
            path, top = pending.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for e in entries:
                if top and (e.name in skip_top or e.name.startswith(".sst")):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    pending.append((e.path, False))
                elif stat.S_ISREG(st.st_mode):
                    out[e.path] = Entry.of(st)
    return out


def summary(datadir: str) -> dict[str, object]:
    """What `galera-sst status` shows of the records in datadir: the joiner's (its donor's
    record id, its files, whether it holds in this boot) or None, and the donor's ids,
    newest first. Read for display only, whoever owns them."""
    joiner: dict[str, object] | None = None
    donor: list[tuple[int, str]] = []
    try:
        entries = list(os.scandir(datadir))
    except OSError:
        entries = []
    for e in entries:
        if not e.name.startswith(PREFIX) or not e.is_file(follow_symlinks=False):
            continue
        if e.name == JOINER:
            try:
                with open(e.path, encoding="utf-8", errors="replace") as f:
                    rec = Record.from_json(f.read())
            except OSError:
                rec = None
            joiner = {
                "id": rec.id if rec else "",
                "files": len(rec.files) if rec else 0,
                "this_boot": bool(rec and rec.boot and rec.boot == boot_id()),
            }
        elif e.name.startswith(PREFIX + "donor-") and e.name.endswith(".json"):
            rid = e.name[len(PREFIX + "donor-") : -len(".json")]
            if valid_id(rid):
                with contextlib.suppress(OSError):  # pruned meanwhile
                    donor.append((e.stat(follow_symlinks=False).st_mtime_ns, rid))
    return {"joiner": joiner, "donor": [rid for _, rid in sorted(donor, reverse=True)]}


def describe(datadir: str) -> str:
    """Lines for `galera-sst status` about the records; '' when there are none."""
    s = summary(datadir)
    lines = []
    j = s["joiner"]
    if isinstance(j, dict):
        if not j["id"]:
            lines.append(
                "record of the last SST received: unreadable (not used; replaced by the next)"
            )
        else:
            use = (
                "used by the next rejoin from its donor"
                if j["this_boot"]
                else "from before a reboot: not used"
            )
            lines.append(
                f"record of the last SST received: {j['files']} file(s), donor's record "
                f"{str(j['id'])[:8]} ({use})"
            )
    donor = s["donor"]
    if isinstance(donor, list) and donor:
        ids = ", ".join(str(r)[:8] for r in donor)
        lines.append(f"records of SSTs given as donor: {len(donor)} ({ids}, newest first)")
    return "\n".join(lines)
