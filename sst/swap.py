"""The joiner's journaled swap: the old datadir entries go aside, the new ones come in.

A swap is a plan of renames on one filesystem per directory:

1. every live entry that is replaced (or dropped) is renamed into a private aside directory
   `<dir>/.sst-old`, created empty by this swap;
2. every received entry is renamed from the staging into the live directory (rsync), or a
   tool moves the new files in (mariabackup's `--move-back`: the "fill" directories);
3. only then is the swap committed; the aside directories are deleted after that.

The plan is written to `<datadir>/.sst-swap.journal` (and fsynced, with its directory)
before the first rename, and rewritten with the state `committed` once every new entry is
in and the directories are fsynced. An interruption at any step, SIGKILL or power loss
included, is repaired by `recover()`, which every joiner runs before anything else and
`galera-sst recover --datadir DIR` runs by hand:

- journal `committed`: the new copy is wholly in; the aside directories (old entries only,
  by construction) are deleted and the swap is finished;
- otherwise it rolls back: if every aside rename happened, the new entries are moved back
  to the staging (rsync) or removed from the fill directories (mariabackup: everything but
  the kept entries, which the plan lists), then the old entries are renamed back.

Recovery decides by what exists, so every step is idempotent and a recovery that is itself
interrupted simply runs again. Nothing deletes a directory that may hold live entries: only
committed aside directories and new entries are ever removed.

A plain `mariadbd` start on a datadir whose swap was interrupted (no joiner ran since) sees a
half-swapped datadir; the journal stays there until the next joiner start or
`galera-sst recover` puts one whole datadir back. Run `galera-sst recover` before starting a
server by hand on a datadir that may have been in the middle of an SST.

Test-only fault hook: with GALERA_SST_FAULT_SWAP_STEP=N in the environment the process
SIGKILLs itself right after the N-th file-system step of `execute()` (journal writes,
directory creations, renames, the fill tool's run, deletions). Unset, it does nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import shutil
import signal
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sst import log
from sst.datadir import (
    BASIS,
    JOURNAL,
    OLD,
    PROTECTED_TOP,
    SST_PID,
    STAGING,
    STAGING_MB,
    TRANSIENT,
    Area,
)
from sst.errors import SSTError
from sst.process import pidfile

FAULT_ENV = "GALERA_SST_FAULT_SWAP_STEP"  # tests only: SIGKILL after that many steps
SWAPPING = "swapping"
COMMITTED = "committed"


class SwapError(SSTError):
    """The swap cannot go on or be repaired without a person (EUCLEAN)."""

    code = errno.EUCLEAN


@dataclass(frozen=True)
class Move:
    """One rename."""

    src: str
    dst: str


@dataclass(frozen=True)
class Plan:
    """What one swap does, in order: create `asides`, the `aside` renames, the `replace`
    steps (the old file hard-linked into the aside directory (`Move.dst` there), then the
    new one renamed over it, so the name never goes missing), the `into` renames (or a
    tool fills `fill`), commit. In fill directories the entries in `keep` and those whose
    full path `keep_re` matches stay."""

    asides: tuple[str, ...]
    aside: tuple[Move, ...]
    into: tuple[Move, ...] = ()
    replace: tuple[tuple[Move, Move], ...] = ()  # (live -> aside link, staged -> live)
    fill: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    keep_re: str = ""

    def to_json(self) -> dict[str, object]:
        """The plan as JSON data."""
        return {
            "asides": list(self.asides),
            "aside": [[m.src, m.dst] for m in self.aside],
            "into": [[m.src, m.dst] for m in self.into],
            "replace": [[a.src, a.dst, b.src] for a, b in self.replace],
            "fill": list(self.fill),
            "keep": list(self.keep),
            "keep_re": self.keep_re,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Plan:
        """Given what to_json wrote; raises KeyError, TypeError or ValueError if malformed."""

        def moves(key: str) -> tuple[Move, ...]:
            items = data[key]
            assert isinstance(items, list)
            return tuple(Move(str(a), str(b)) for a, b in items)

        def strings(key: str) -> tuple[str, ...]:
            items = data[key]
            assert isinstance(items, list)
            return tuple(str(x) for x in items)

        triples = data["replace"]
        assert isinstance(triples, list)
        return cls(
            strings("asides"),
            moves("aside"),
            moves("into"),
            tuple((Move(str(a), str(b)), Move(str(c), str(a))) for a, b, c in triples),
            strings("fill"),
            strings("keep"),
            str(data["keep_re"]),
        )


def is_ours(name: str) -> bool:
    """Names galera-sst owns in a datadir (staging, aside, journal, markers, transient
    files) and names a transfer never touches (lost+found, snapshots, the status file)."""
    return name.startswith(".sst") or name in TRANSIENT or name in PROTECTED_TOP


def refusal(directory: str, name: str, *, files_only: bool, patterns: Sequence[str]) -> str:
    """Why a received top-level entry may not be swapped in ('' if it may).

    The rule: a plain name (not '', '.', '..', no '/' or NUL), none of ours (is_ours), and
    a regular file or a directory (no symlink, device, fifo or socket); directories only
    where files_only is false; with patterns, only names matching one of them.
    """
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return "not a plain name"
    if is_ours(name):
        return "a name galera-sst keeps for itself"
    return _kind_refusal(directory, name, files_only=files_only, patterns=patterns)


def _kind_refusal(directory: str, name: str, *, files_only: bool, patterns: Sequence[str]) -> str:
    try:
        mode = os.lstat(os.path.join(directory, name)).st_mode
    except OSError as exc:
        return exc.strerror or "unreadable"
    if stat.S_ISDIR(mode) and files_only:
        return "a directory where only files belong"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "neither a regular file nor a directory"
    if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
        return "not a file this directory carries"
    return ""


# The redo log: set aside first and renamed in last, so that during the whole swap the
# datadir has an InnoDB system tablespace but no redo log, and a plain mariadbd start on it
# fails ("File ./ib_logfile0 was not found") instead of opening a mix of old and new.
GUARDS = ("ib_logfile0",)


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _links_work(directory: str) -> bool:
    """Whether directory's filesystem has hard links (a replace needs them; without, files
    are set aside and renamed in like directories)."""
    probe = os.path.join(directory, ".sst-link-probe")
    for stale in (probe, probe + "2"):  # left by a kill, or links planted in their place
        with contextlib.suppress(OSError):
            os.unlink(stale)  # unlink never follows a link
    try:
        os.close(os.open(probe, pidfile.CREATE_NEW, 0o600))
        os.link(probe, probe + "2")
        os.unlink(probe + "2")
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


@dataclass
class _Moves:
    aside: list[Move]
    into: list[Move]
    replace: list[tuple[Move, Move]]
    refused: list[str]


def _accepted(area: Area, skip: Sequence[str], files_only: bool, out: _Moves) -> list[str]:
    names = sorted(os.listdir(area.staged)) if os.path.isdir(area.staged) else []
    take: list[str] = []
    for name in names:
        if name in skip:
            continue
        why = refusal(area.staged, name, files_only=files_only, patterns=area.patterns)
        if why:
            out.refused.append(f"{name!r} ({why})")
        else:
            take.append(name)
    return take


def _area_moves(area: Area, *, skip: Sequence[str], is_main: bool, out: _Moves) -> None:
    """Add one area's steps to out: regular files replaced in place (but the guards),
    everything else set aside and renamed in; in the main area, live directories the
    donor did not send are set aside (a dropped database)."""
    old = os.path.join(area.live, OLD)
    take = _accepted(area, skip, not is_main, out)
    links = _links_work(area.live)
    for name in take:
        live, staged, aside = (os.path.join(d, name) for d in (area.live, area.staged, old))
        if links and name not in GUARDS and _is_file(live) and _is_file(staged):
            out.replace.append((Move(live, aside), Move(staged, live)))
            continue
        if os.path.lexists(live):
            out.aside.append(Move(live, aside))
        out.into.append(Move(staged, live))
    if is_main:
        for name in sorted(os.listdir(area.live)):
            path = os.path.join(area.live, name)
            if name in take or name in skip or is_ours(name):
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                out.aside.append(Move(path, os.path.join(old, name)))


def rsync_plan(
    main: Area, subs: Sequence[Area], skip: Sequence[str]
) -> tuple[Plan, tuple[str, ...]]:
    """The plan for the rsync joiner, and the received names it refuses (see refusal()).

    Given the datadir's area, the separate areas (files only, by their patterns) and the
    main staging's names that are not data (the completion file, nested stagings): these
    are neither swapped in nor dropped. Live top-level files the donor did not send stay
    (grastate.dat, galera.cache, *.pem, logs); live directories it did not send go (a
    dropped database). The guards (GUARDS) go aside first and come in last.
    """
    out = _Moves([], [], [], [])
    for area in [*subs, main]:
        _area_moves(area, skip=skip if area is main else (), is_main=area is main, out=out)

    def guard(m: Move) -> bool:
        return os.path.basename(m.src) in GUARDS

    aside = sorted(out.aside, key=lambda m: not guard(m))
    into = sorted(out.into, key=guard)
    used = {os.path.dirname(m.dst) for m in aside} | {
        os.path.dirname(a.dst) for a, _ in out.replace
    }
    asides = tuple(
        os.path.join(a.live, OLD) for a in [*subs, main] if os.path.join(a.live, OLD) in used
    )
    return Plan(asides, tuple(aside), tuple(into), tuple(out.replace)), tuple(out.refused)


def fill_plan(dirs: Sequence[str], keep_re: str, always: Sequence[str] = ()) -> Plan:
    """The plan for a tool that moves the new files in (mariabackup --move-back).

    Every depth-1 entry of dirs goes aside except ours and those whose full path keep_re
    matches (cpat); the paths in `always` go aside even if keep_re matches them.
    """
    pattern = re.compile(keep_re)
    filled: list[str] = []
    aside: list[Move] = []
    keep: list[str] = []
    for d in dict.fromkeys(dirs):
        if not os.path.isdir(d):
            continue
        filled.append(d)
        old = os.path.join(d, OLD)
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if is_ours(name):
                continue
            if pattern.fullmatch(path) and path not in always:
                keep.append(path)
            else:
                aside.append(Move(path, os.path.join(old, name)))
    asides = tuple(os.path.join(d, OLD) for d in filled)
    return Plan(asides, tuple(aside), fill=tuple(filled), keep=tuple(keep), keep_re=keep_re)


class _Steps:
    """Counts the swap's file-system steps for the test-only fault hook (FAULT_ENV)."""

    def __init__(self) -> None:
        value = os.environ.get(FAULT_ENV, "")
        self.kill_at = int(value) if value.isdigit() else 0
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        if self.kill_at and self.done == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_journal(path: str, plan: Plan, state: str) -> None:
    data = json.dumps({"version": 1, "state": state, "plan": plan.to_json()})
    pidfile.replace_file(path, data.encode("utf-8", "surrogateescape"), None, sync=True)
    _fsync_dir(os.path.dirname(path))


def _read_journal(path: str) -> tuple[str, Plan]:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            data = json.load(f)
        return str(data["state"]), Plan.from_json(data["plan"])
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise SwapError(
            f"the swap journal {path} is unreadable ({exc}); the datadir may be half "
            "swapped: compare it with the .sst-old directories before removing the journal"
        ) from None


def _touched(plan: Plan) -> list[str]:
    dirs = [*plan.asides, *plan.fill]
    for m in (*plan.aside, *plan.into, *(x for pair in plan.replace for x in pair)):
        dirs += [os.path.dirname(m.src), os.path.dirname(m.dst)]
    return list(dict.fromkeys(dirs))


def execute(datadir: str, plan: Plan, fill: Callable[[], None] | None = None) -> None:
    """Carry out plan under the journal; `fill` runs the tool that moves new files in.

    Raises SwapError when a journal or an aside directory is already there (recover()
    first); any failure before the commit is rolled back, and re-raised.
    """
    journal = os.path.join(datadir, JOURNAL)
    for path in (journal, *plan.asides):
        if os.path.lexists(path):
            raise SwapError(
                f"{path} is left from an interrupted swap: run galera-sst recover --datadir "
                f"{datadir}; without a journal, move back what belongs and remove it"
            )
    step = _Steps()
    os.sync()  # the received files' data, before any rename can make them live
    _write_journal(journal, plan, SWAPPING)
    step()
    try:
        _forward(plan, fill, step)
    except BaseException as exc:
        _undo_or_explain(datadir, journal, plan, exc)
        raise
    _write_journal(journal, plan, COMMITTED)
    step()
    _finish(journal, plan, step)


def _forward(plan: Plan, fill: Callable[[], None] | None, step: Callable[[], None]) -> None:
    for d in plan.asides:
        os.mkdir(d, 0o700)
        step()
    for d in plan.asides:
        _fsync_dir(os.path.dirname(d))
    for m in plan.aside:
        _rename_new(m)
        step()
    for link, new in plan.replace:
        os.link(link.src, link.dst)  # the old file stays in place, and in the aside too
        step()
        os.rename(new.src, new.dst)  # atomic: the name is never missing
        step()
    for m in plan.into:
        _rename_new(m)
        step()
    if fill is not None:
        fill()
        step()
    for d in _touched(plan):
        _fsync_dir(d)


def _rename_new(m: Move) -> None:
    if os.path.lexists(m.dst):
        raise SwapError(f"{m.dst} appeared during the swap; refusing to replace it")
    os.rename(m.src, m.dst)


def _undo_or_explain(datadir: str, journal: str, plan: Plan, exc: BaseException) -> None:
    try:
        _rollback(plan)
        os.unlink(journal)
        _fsync_dir(datadir)
    except (OSError, SSTError) as undo:
        raise SwapError(
            f"the swap failed ({exc}) and could not be rolled back ({undo}); the journal "
            f"{journal} is kept: fix the cause, then run galera-sst recover --datadir {datadir}"
        ) from undo


def _finish(journal: str, plan: Plan, step: Callable[[], None]) -> None:
    """Committed: delete the aside directories (old entries only), then the journal."""
    for d in plan.asides:
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            _remove_any(os.path.join(d, name))
            step()
        os.rmdir(d)
        _fsync_dir(os.path.dirname(d))
        step()
    os.unlink(journal)
    _fsync_dir(os.path.dirname(journal))
    step()


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _rollback(plan: Plan) -> None:
    """Put the old entries back; idempotent. New entries can only be in place once every
    aside rename happened (they all come first), so only then are they taken out; a
    replaced file is the old one while its aside link is the same inode."""
    if all(os.path.lexists(m.dst) for m in plan.aside):
        for m in reversed(plan.into):
            if os.path.lexists(m.dst) and not os.path.lexists(m.src):
                os.makedirs(os.path.dirname(m.src), exist_ok=True)
                os.rename(m.dst, m.src)
        for d in plan.fill:
            _remove_filled(d, plan)
    for link, _ in reversed(plan.replace):
        if not os.path.lexists(link.dst):
            continue
        if _same_file(link.src, link.dst):
            os.unlink(link.dst)  # the new file never came in (or was the old one)
        else:
            os.rename(link.dst, link.src)  # atomic: the old file back over the new one
    for m in reversed(plan.aside):
        if not os.path.lexists(m.dst):
            continue
        if os.path.lexists(m.src):
            raise SwapError(f"both {m.src} and its old copy {m.dst} exist; not guessing")
        os.rename(m.dst, m.src)
    for d in _touched(plan):
        _fsync_dir(d)
    for d in plan.asides:
        if os.path.isdir(d):
            os.rmdir(d)  # empty now; if not, OSError keeps it and the journal
            _fsync_dir(os.path.dirname(d))


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _remove_filled(directory: str, plan: Plan) -> None:
    """Remove what the fill tool moved into directory: everything not kept and not ours."""
    if not os.path.isdir(directory):
        return
    pattern = re.compile(plan.keep_re) if plan.keep_re else None
    old = {m.src for m in plan.aside}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if is_ours(name):
            continue
        kept = path in plan.keep or (pattern is not None and pattern.fullmatch(path))
        if kept and path not in old:
            continue
        _remove_any(path)


def recover(datadir: str) -> str:
    """Repair an interrupted swap of datadir; returns what was done ('' if nothing).

    Raises SwapError when the journal is unreadable or the old entries cannot be put back,
    and when an aside directory is there without a journal (an older galera-sst's
    interrupted swap: it may hold live entries, so it is neither used nor deleted).
    """
    journal = os.path.join(datadir, JOURNAL)
    for name in os.listdir(datadir):  # a journal write a SIGKILL cut short (replace_file)
        if name.startswith(f".{JOURNAL}.") and name.endswith(".tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(datadir, name))
    if not os.path.lexists(journal):
        legacy = os.path.join(datadir, OLD)
        if os.path.lexists(legacy):
            raise SwapError(
                f"{legacy} is left from an interrupted swap without a journal; it may hold "
                "the old datadir's entries: move back what belongs, then remove it"
            )
        return ""
    state, plan = _read_journal(journal)
    if state == COMMITTED:
        _finish(journal, plan, lambda: None)
        log.info(f"Finished an interrupted swap in {datadir}: the new copy is in place")
        return "finished"
    try:
        _rollback(plan)
    except OSError as exc:
        raise SwapError(
            f"cannot roll back the interrupted swap in {datadir}: {exc}; the journal "
            f"{journal} is kept"
        ) from None
    os.unlink(journal)
    _fsync_dir(datadir)
    log.warning(f"Rolled back an interrupted swap in {datadir}: the old datadir is in place")
    return "rolled back"


def recover_offline(datadir: str) -> str:
    """`galera-sst recover`: recover(), refused while an SST script runs on datadir (its
    pid file names a live process: exit 114); then the staging directories, which hold
    received data only once no swap is pending, are removed so a plain server start does
    not meet them."""
    pidfile.wait_stale(os.path.join(datadir, SST_PID), "an SST script", attempts=1, delay=0)
    done = recover(datadir)
    for name in (STAGING, BASIS, STAGING_MB):
        path = os.path.join(datadir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
    return done
