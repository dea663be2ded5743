"""Drop-in installation: put galera-sst in place of the stock wsrep_sst_* scripts, reversibly.

mariadbd always puts `<basedir>/bin` (normally `/usr//bin`) first on the scripts' PATH
(docs/findings.md), so a same-named script elsewhere on PATH never replaces the stock one:
the files in /usr/bin themselves must be replaced. On Debian and Ubuntu that is done with
`dpkg-divert --rename`, so package upgrades keep ours and `uninstall` restores the stock
files byte for byte. Elsewhere the manual steps are printed instead of guessed.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from sst.errors import SSTError
from sst.process.runner import run_capture

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


def _write_shim(path: str, python: str) -> None:
    tmp = f"{path}.galera-sst.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(shim_text(python))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)


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
    """Divert every stock script and put ours in place; idempotent."""
    _checks(env)
    if shutil.which(env.dpkg_divert) is None:
        raise InstallError(manual_steps(env))
    # Check everything first: either all names are replaced, or none.
    todo = []
    for name in STOCK:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        by = _diverted_by(env, path)
        if by == PACKAGE:
            todo.append((path, True))
            continue
        if by:
            raise InstallError(
                f"{path} is already diverted by package '{by}'; refusing to "
                "stack diversions (remove that one first)"
            )
        owner = _owner(env, path)
        if not owner or not os.path.lexists(path):
            raise InstallError(
                f"{path} is not where dpkg says it is (owner "
                f"'{owner or 'none'}'); is mariadb-server installed?"
            )
        todo.append((path, False))
    for name in EXTRA:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        if os.path.lexists(path) and not is_ours(path):
            raise InstallError(f"{path} exists and is not galera-sst's; refusing to replace it")
    for path, done in todo:
        if not done:
            res = run_capture(
                (
                    env.dpkg_divert,
                    "--package",
                    PACKAGE,
                    "--rename",
                    "--divert",
                    path + SUFFIX,
                    "--add",
                    path,
                ),
                timeout=60,
            )
            if res.returncode != 0:
                raise InstallError(f"dpkg-divert --add {path} failed: {res.stderr.strip()}")
        if not is_ours(path):
            _write_shim(path, env.python)
        how = "already installed" if done else f"stock diverted to {path}{SUFFIX}"
        say(f"{path}: galera-sst ({how})")
    for name in EXTRA:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        _write_shim(path, env.python)
        say(f"{path}: galera-sst (alias of mariabackup)")


def uninstall(env: Env, say: Callable[[str], None] = print) -> None:
    """Remove our shims and restore every diverted stock script; idempotent."""
    _checks(env)
    if shutil.which(env.dpkg_divert) is None:
        raise InstallError(manual_steps(env))
    for name in EXTRA:
        path = os.path.join(env.bindir, f"wsrep_sst_{name}")
        if is_ours(path):
            os.unlink(path)
            say(f"{path}: removed")
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
        if os.path.lexists(path):
            if not is_ours(path):
                raise InstallError(f"{path} was replaced by something else; not touching it")
            os.unlink(path)
        res = run_capture(
            (
                env.dpkg_divert,
                "--package",
                PACKAGE,
                "--rename",
                "--divert",
                path + SUFFIX,
                "--remove",
                path,
            ),
            timeout=60,
        )
        if res.returncode != 0:
            raise InstallError(f"dpkg-divert --remove {path} failed: {res.stderr.strip()}")
        say(f"{path}: stock script restored")
