"""Drop-in installation: put galera-sst in place of the stock wsrep_sst_* scripts, reversibly.

mariadbd always puts `<basedir>/bin` (normally `/usr//bin`) first on the scripts' PATH
(docs/findings.md), so a same-named script elsewhere on PATH never replaces the stock one:
the files in /usr/bin themselves must be replaced. On Debian and Ubuntu that is done with
`dpkg-divert`, so package upgrades keep ours and `uninstall` restores the stock files byte
for byte. We move the files ourselves (`--no-rename`), each in one rename, so that a path
never lacks a script; every step is journaled and a failure rolls back the steps done.
Elsewhere the manual steps are printed instead of guessed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sst.errors import SSTError
from sst.process.pidfile import replace_file
from sst.process.runner import cleanup_shield, run_capture

PACKAGE = "galera-sst"
STOCK = ("mariabackup", "rsync", "rsync_wan", "mysqldump", "backup")
EXTRA = ("xtrabackup-v2", "xtrabackup")  # MariaDB ships neither; old configs name them
MARKER = "# galera-sst drop-in shim"
SUFFIX = ".galera-sst-stock"


class InstallError(SSTError):
    """The drop-in installation cannot proceed safely (EPERM, 1)."""

    code = 1


@dataclass(frozen=True)
class Env:
    """Where things are; tests point these at a scratch directory and fake tools."""

    bindir: str = "/usr/bin"
    python: str = sys.executable
    dpkg_divert: str = "dpkg-divert"
    dpkg: str = "dpkg"
    require_root: bool = True


def shim_text(python: str) -> str:
    """The script put at /usr/bin/wsrep_sst_<name>; the method comes from its name."""
    return f"#!{python}\n{MARKER}\nfrom sst.cli import main\nmain()\n"


def is_ours(path: str) -> bool:
    """True if path is one of our shims."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Saved:
    """A file's content and mode (None: there was no file), to put back on a rollback."""

    data: bytes | None
    mode: int = 0o755
    mtime: float = 0.0
    link: str = ""  # a symbolic link's target (Debian ships wsrep_sst_rsync_wan as one)


def _save(path: str) -> Saved:
    """Given a path, returns what it holds now."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return Saved(b"", link=os.readlink(path))
        with open(path, "rb") as f:
            return Saved(f.read(), stat.S_IMODE(st.st_mode), st.st_mtime)
    except FileNotFoundError:
        return Saved(None)


def _put(path: str, saved: Saved) -> None:
    """Given a path and a Saved state, makes the path hold it: replaced in one rename (the
    path is never missing on the way), or removed if the state is 'no file'."""
    if saved.data is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    if saved.link:
        tmp = f"{path}.galera-sst-link"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(saved.link, tmp)
        os.replace(tmp, path)
        return
    replace_file(path, saved.data, saved.mode)
    if saved.mtime:
        os.utime(path, (saved.mtime, saved.mtime))


def _shim(env: Env) -> Saved:
    return Saved(shim_text(env.python).encode("utf-8"), 0o755)


def _putter(path: str, saved: Saved) -> Callable[[], None]:
    return lambda: _put(path, saved)


def _diverter(env: Env, op: str, path: str) -> Callable[[], None]:
    return lambda: _divert(env, op, path)


def _unlinker(path: str) -> Callable[[], None]:
    return lambda: _put(path, Saved(None))


class Journal:
    """The steps done so far, each with its undo: a failure at any step undoes the steps
    done, in reverse, so install and uninstall are all-or-nothing."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def step(self, what: str, do: Callable[[], None], undo: Callable[[], None]) -> None:
        """Given a description, an action and its inverse: run the action (which either
        happens or raises) and record the inverse."""
        do()
        self._undo.append((what, undo))

    def rollback(self) -> list[str]:
        """Undo every recorded step, newest first; returns what could not be undone."""
        failed = []
        with cleanup_shield():
            while self._undo:
                what, undo = self._undo.pop()
                try:
                    undo()
                except (SSTError, OSError) as exc:
                    failed.append(f"{what} ({exc})")
        return failed


def _transaction(name: str, plan: Callable[[Journal], None]) -> None:
    """Given a command name and its steps, runs them; on any failure rolls them back and
    raises InstallError naming the cause and what, if anything, stayed changed."""
    journal = Journal()
    try:
        plan(journal)
    except BaseException as exc:
        left = journal.rollback()
        cause = exc.message if isinstance(exc, SSTError) else f"{type(exc).__name__}: {exc}"
        if left:
            raise InstallError(
                f"{name} failed: {cause}; rolling back failed too, still changed: "
                + "; ".join(left)
            ) from None
        raise InstallError(f"{name} failed: {cause}; nothing was changed") from None


def _divert(env: Env, op: str, path: str) -> None:
    """dpkg-divert --add or --remove for our package, never renaming: the files are moved
    by us, each in one rename, so that the path always holds a file."""
    argv = (env.dpkg_divert, "--package", PACKAGE, "--no-rename", "--divert", path + SUFFIX)
    res = run_capture((*argv, op, path), timeout=60)
    if res.returncode != 0:
        raise InstallError(f"dpkg-divert {op} {path} failed: {res.stderr.strip()}")


def _diverted_by(env: Env, path: str) -> str:
    res = run_capture((env.dpkg_divert, "--listpackage", path), timeout=30)
    if res.returncode != 0:
        raise InstallError(f"dpkg-divert --listpackage {path} failed: {res.stderr.strip()}")
    return res.stdout.strip()


def _owner(env: Env, path: str) -> str:
    res = run_capture((env.dpkg, "-S", path), timeout=30)
    if res.returncode != 0:
        return ""
    return res.stdout.split(":", 1)[0].strip()


def _checks(env: Env) -> None:
    if env.require_root and os.geteuid() != 0:
        raise InstallError("install and uninstall change files in /usr/bin: run as root")


def manual_steps(env: Env) -> str:
    """What to do by hand where dpkg-divert is not available."""
    lines = ["dpkg-divert is not available: replace the stock scripts by hand, for example:"]
    for name in STOCK:
        p = os.path.join(env.bindir, f"wsrep_sst_{name}")
        lines.append(
            f"  mv {p} {p}{SUFFIX} && printf '%s' '{shim_text(env.python)}' > {p} && chmod 755 {p}"
        )
    lines.append(
        "and reverse it to uninstall. On RPM systems a package upgrade will put the "
        "stock scripts back; repeat the steps after each upgrade."
    )
    return "\n".join(lines)


def install(env: Env, say: Callable[[str], None] = print) -> None:
    """Divert every stock script and put ours in place; idempotent and all-or-nothing.
    Raises InstallError (nothing changed, or exactly what a failed rollback left)."""
    _checks(env)
    if shutil.which(env.dpkg_divert) is None:
        raise InstallError(manual_steps(env))
    todo = _install_checks(env)  # everything is checked before anything changes
    done: list[str] = []

    def plan(j: Journal) -> None:
        for path, diverted in todo:
            if not diverted:
                stock, saved = path + SUFFIX, _save(path)
                j.step(f"copy {path}", _putter(stock, saved), _unlinker(stock))
                j.step(
                    f"divert {path}",
                    _diverter(env, "--add", path),
                    _diverter(env, "--remove", path),
                )
                j.step(f"replace {path}", _putter(path, _shim(env)), _putter(path, saved))
            elif not is_ours(path):
                j.step(f"replace {path}", _putter(path, _shim(env)), _putter(path, _save(path)))
            how = "already installed" if diverted else f"stock diverted to {path}{SUFFIX}"
            done.append(f"{path}: galera-sst ({how})")
        for name in EXTRA:
            path = os.path.join(env.bindir, f"wsrep_sst_{name}")
            j.step(f"write {path}", _putter(path, _shim(env)), _putter(path, _save(path)))
            done.append(f"{path}: galera-sst (alias of mariabackup)")

    _transaction("install", plan)
    for line in done:
        say(line)


def _sibling_link_or_file(path: str) -> bool:
    """A regular file, or a symbolic link to a file beside it (`wsrep_sst_rsync_wan ->
    wsrep_sst_rsync` in Debian's packages); no other link is replaced."""
    if not os.path.islink(path):
        return True
    target = os.readlink(path)
    return "/" not in target and os.path.isfile(os.path.join(os.path.dirname(path), target))


def _install_checks(env: Env) -> list[tuple[str, bool]]:
    """The stock paths with whether each is already diverted by us; raises InstallError if
    any cannot be replaced safely."""
    todo = []
    for name in STOCK:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        by = _diverted_by(env, path)
        if by == PACKAGE:
            if not os.path.isfile(path + SUFFIX):
                raise InstallError(f"{path} is diverted by galera-sst but {path}{SUFFIX} is gone")
            todo.append((path, True))
            continue
        if by:
            raise InstallError(
                f"{path} is already diverted by package '{by}'; refusing to "
                "stack diversions (remove that one first)"
            )
        owner = _owner(env, path)
        if not owner or not os.path.isfile(path) or not _sibling_link_or_file(path):
            raise InstallError(
                f"{path} is not where dpkg says it is (owner "
                f"'{owner or 'none'}'); is mariadb-server installed?"
            )
        if os.path.lexists(path + SUFFIX):
            raise InstallError(f"{path}{SUFFIX} exists but is no diversion of ours; remove it")
        todo.append((path, False))
    for name in EXTRA:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        if os.path.lexists(path) and not is_ours(path):
            raise InstallError(f"{path} exists and is not galera-sst's; refusing to replace it")
    return todo


def uninstall(env: Env, say: Callable[[str], None] = print) -> None:
    """Remove our shims and restore every diverted stock script; idempotent and
    all-or-nothing. Each path holds our shim or the stock script at every moment: the
    diversion is removed first, then the stock file replaces ours in one rename.
    Raises InstallError (nothing changed, or exactly what a failed rollback left)."""
    _checks(env)
    if shutil.which(env.dpkg_divert) is None:
        raise InstallError(manual_steps(env))
    todo = _uninstall_checks(env)
    done: list[str] = []

    def plan(j: Journal) -> None:
        for path in todo:
            stock = path + SUFFIX
            j.step(
                f"remove the diversion of {path}",
                _diverter(env, "--remove", path),
                _diverter(env, "--add", path),
            )
            j.step(f"restore {path}", _putter(path, _save(stock)), _putter(path, _save(path)))
            j.step(f"remove {stock}", _unlinker(stock), _putter(stock, _save(stock)))
            done.append(f"{path}: stock script restored")
        for name in EXTRA:
            path = os.path.join(env.bindir, f"wsrep_sst_{name}")
            if is_ours(path):
                j.step(f"remove {path}", _unlinker(path), _putter(path, _save(path)))
                done.append(f"{path}: removed")

    _transaction("uninstall", plan)
    for line in done:
        say(line)


def _uninstall_checks(env: Env) -> list[str]:
    """The stock paths diverted by us; raises InstallError if any cannot be restored."""
    todo = []
    for name in STOCK:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        by = _diverted_by(env, path)
        if by != PACKAGE:
            if is_ours(path):
                raise InstallError(
                    f"{path} is galera-sst's but not diverted by it; restore the "
                    "stock file by reinstalling mariadb-server"
                )
            continue
        if os.path.lexists(path) and not is_ours(path):
            raise InstallError(f"{path} was replaced by something else; not touching it")
        if not os.path.isfile(path + SUFFIX) or not _sibling_link_or_file(path + SUFFIX):
            raise InstallError(f"the stock {path}{SUFFIX} is missing; not touching {path}")
        todo.append(path)
    return todo
