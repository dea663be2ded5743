"""rsync: the donor's push passes and the joiner's daemon configuration."""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sst.errors import ConfigError

MAGIC_FILE = "rsync_sst_complete"
BINLOG_TAR = "wsrep_sst_binlog.tar"
DEFAULT_MODULE = "rsync_sst"
SUBMODULES = ("data_dir", "log_dir", "undo_dir", "aria_log")

# Top-level names never sent (stock filter) and never deleted on the joiner.
EXCLUDED_TOP = ("lost+found", ".zfs", ".fseventsd", ".Trashes", ".pid", ".conf", ".snapshot")

# Which files each sub-module carries (rsync filter patterns, relative to the module root).
SUBMODULE_FILES = {
    "data_dir": ("ibdata*", "ib_lru_dump"),
    "log_dir": ("ib_logfile0",),
    "undo_dir": ("undo*",),
    "aria_log": ("aria_log_control", "aria_log.*"),
}


def errno_for(rc: int) -> int:
    """rsync exit status -> the errno the stock script exits with."""
    if rc == 12:
        return errno.EPROTO  # protocol mismatch: different rsync versions
    if rc == 22:
        return errno.ENOMEM
    return 255


def rsh_stunnel(stunnel: str, conf: str) -> str:
    """The --rsh value. rsync splits it itself at spaces and honours single quotes, inside
    which a doubled quote is one literal quote (rsync(1), --rsh): given the stunnel binary
    and its configuration path (any characters but a line break); returns the value."""
    return " ".join("'" + part.replace("'", "''") + "'" for part in (stunnel, conf))


@dataclass(frozen=True)
class Push:
    """Options shared by every donor pass."""

    url: str  # rsync://host:port/module
    whole_file: bool = True
    rsh: str = ""
    bwlimit_kib: int = 0  # per rsync process; 0: unlimited
    # Why a pass failed, from its stderr (the tunnel's TLS verdict): the runner's Stage.explain.
    explain: Callable[[Sequence[str]], str] | None = field(default=None, compare=False)

    def common(self) -> tuple[str, ...]:
        """Flags on every pass. No --inplace: a staged joiner shares inodes with its old copy."""
        out = [
            "--owner",
            "--group",
            "--perms",
            "--links",
            "--specials",
            "--ignore-times",
            "--delete",
            "--quiet",
        ]
        if self.whole_file:
            out.append("--whole-file")
        if self.rsh:
            out.append(f"--rsh={self.rsh}")
        if self.bwlimit_kib:
            out.append(f"--bwlimit={self.bwlimit_kib}")
        return tuple(out)


def top_level_pass(binary: str, push: Push, datadir: str) -> tuple[str, ...]:
    """Pass 1: the datadir's directories (not recursive) and the binlog tar."""
    filters: list[str] = []
    for name in EXCLUDED_TOP:
        filters += ["-f", f"- /{name}" + ("/" if name == ".snapshot" else "")]
    filters += ["-f", f"+ /{BINLOG_TAR}", "-f", "+ /*/", "-f", "- /*"]
    return (binary, *push.common(), "--dirs", *filters, f"{datadir}/", push.url)


def submodule_pass(binary: str, push: Push, source_dir: str, sub: str) -> tuple[str, ...]:
    """Passes 2-5: InnoDB data, redo, undo and Aria log files into their own modules."""
    filters: list[str] = []
    for pat in SUBMODULE_FILES[sub]:
        filters += ["-f", f"+ /{pat}"]
    filters += ["-f", "- **"]
    return (binary, *push.common(), "--dirs", *filters, f"{source_dir}/", f"{push.url}-{sub}")


def database_pass(binary: str, push: Push, datadir: str, db: str) -> tuple[str, ...]:
    """Pass 6: one database directory, recursively."""
    return (binary, *push.common(), "--recursive", f"{datadir}/{db}/", f"{push.url}/{db}")


def magic_pass(binary: str, push: Push, magic_path: str) -> tuple[str, ...]:
    """The completion file, sent last."""
    rsh = (f"--rsh={push.rsh}",) if push.rsh else ()
    return (binary, *rsh, "--archive", "--quiet", "--checksum", magic_path, push.url)


# What rsync (3.2 to 3.5) expands in rsyncd.conf string values: `%`, an upper-case letter,
# anything up to the next `%`, when that names an environment variable (rsyncd.conf's
# manual, GLOBAL PARAMETERS; measured: its advice to write `%%` does not escape it).
_RSYNCD_VAR = re.compile(r"%[A-Z][^%]*%")


def conf_path(path: str) -> str:
    """An absolute path as an rsyncd.conf value. rsyncd.conf keeps inner white space, `#`,
    quotes and the like verbatim and trims only the ends (an absolute path starts with `/`;
    ours never end in white space or a continuing backslash; rsyncd.conf's manual, FILE
    FORMAT).

    Given the path; returns it; raises ConfigError for a line break, a relative path, one
    ending in white space or a backslash, and one that rsync would expand (%NAME%), which
    no escape protects."""
    if "\n" in path or "\r" in path:
        raise ConfigError(f"directory name contains a line break: {path!r}")
    if not path.startswith("/") or path[-1].isspace() or path.endswith("\\"):
        raise ConfigError(f"rsyncd.conf cannot carry this path verbatim: {path!r}")
    var = _RSYNCD_VAR.search(path)
    if var:
        raise ConfigError(
            f"the rsync daemon would read {var.group()} in {path!r} as an environment "
            "variable; rename the directory"
        )
    return path


def daemon_conf(
    *,
    pid_file: str,
    modules: Sequence[tuple[str, str]],
    as_root: bool,
    timeout: int,
    refuse_inplace: bool,
) -> str:
    """rsyncd.conf text. A daemon started by root would drop to `nobody` and could not write
    the datadir (the stock script's bug): as root we stay root, otherwise nothing changes.
    Paths are written as rsyncd.conf reads them back verbatim (see conf_path)."""
    lines = [
        f"pid file = {conf_path(pid_file)}",
        "use chroot = no",
        "read only = no",
        f"timeout = {timeout}",
        "log file = /dev/stderr",  # errors (a full disk) reach the supervisor, not syslog
    ]
    if as_root:
        lines += ["uid = 0", "gid = 0"]
    if refuse_inplace:
        lines.append("refuse options = inplace")
    for name, path in modules:
        lines += [f"[{name}]", f"    path = {conf_path(path)}", "    exclude = .zfs"]
    return "\n".join(lines) + "\n"


def daemon_argv(binary: str, conf: str, port: int, address: str) -> tuple[str, ...]:
    """A foreground rsync daemon bound to one address."""
    out = [binary, "--daemon", "--no-detach", "--port", str(port), "--config", conf]
    if address:
        out += ["--address", address]
    return tuple(out)


def server_execargs(conf_name: str) -> str:
    """What stunnel runs per connection. stunnel splits execargs at white space and knows no
    quoting (sst-contract.md 5.4: the stock script falls back to `$SHELL -c`), so the rsync
    configuration is named relative to stunnel's working directory, the private run
    directory, whatever that directory's own path holds.

    Given the configuration's bare file name; returns the execargs value; raises ConfigError
    for a name with a directory part or white space (a programming error, never user input).
    """
    if not conf_name or "/" in conf_name or any(c.isspace() for c in conf_name):
        raise ConfigError(f"rsync config name must be a bare file name: {conf_name!r}")
    return f"rsync --server --daemon --config={conf_name} ."
