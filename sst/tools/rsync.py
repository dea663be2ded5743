"""rsync: the donor's push passes and the joiner's daemon configuration."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sst.errors import ConfigError

# rsync's exit status when the only trouble was source files that vanished while it ran
# ("Partial transfer due to vanished source files"); 23 ("Partial transfer due to error")
# is anything else: an unreadable file, a failed write or delete on the receiver, a listed
# file that is not there.
VANISHED = 24

MAGIC_FILE = "rsync_sst_complete"
BINLOG_TAR = "wsrep_sst_binlog.tar"
DEFAULT_MODULE = "rsync_sst"
AUTH_USER = "sst"  # the rsync user of an authenticated module (ours to ours)
# The joiner's basis (README, "Stale joiners and resume"): the announced module name ends in
# `_b<cluster uuid, 32 hex digits>` when the joiner holds data of that cluster; the modules
# onto its basis staging are the announced names with BASIS_SUFFIX (sub-modules after it).
BASIS_SUFFIX = ".basis"
ORIGIN_FILE = ".sst-origin"  # our donor's first file: its `uuid:seqno` (resume marker)
# Received directories private (the staging root too), set-user/group-id bits cleared.
INCOMING_CHMOD = "Dgo-rwx,ug-s"

# Top-level names never sent (stock filter) and never deleted on the joiner.
EXCLUDED_TOP = ("lost+found", ".zfs", ".fseventsd", ".Trashes", ".pid", ".conf", ".snapshot")
# ... and galera-sst's own directories a donor may hold from its own time as a joiner.
EXCLUDED_OURS = (".sst-basis", ".sst-kept")

# Which files each sub-module carries (rsync filter patterns, relative to the module root).
SUBMODULE_FILES = {
    "data_dir": ("ibdata*", "ib_lru_dump"),
    "log_dir": ("ib_logfile0",),
    "undo_dir": ("undo*",),
    "aria_log": ("aria_log_control", "aria_log.*"),
}
SUBMODULES = tuple(SUBMODULE_FILES)  # the modules beside the main one


def errno_for(rc: int) -> int:
    """rsync exit status -> the errno the stock script exits with."""
    if rc == 12:
        return errno.EPROTO  # protocol mismatch: different rsync versions
    if rc == 22:
        return errno.ENOMEM
    return 255


def push_url(hostport: str, module: str, *, user: str = "") -> str:
    """`rsync://[user@]host:port/module` (with --rsh the user is still rsync's own)."""
    return f"rsync://{user + '@' if user else ''}{hostport}/{module}"


def rsh_stunnel(stunnel: str, conf: str) -> str:
    """The --rsh value. rsync splits it itself at spaces and honours single quotes, inside
    which a doubled quote is one literal quote (rsync(1), --rsh): given the stunnel binary
    and its configuration path (any characters but a line break); returns the value."""
    return " ".join("'" + part.replace("'", "''") + "'" for part in (stunnel, conf))


NODELAY = "TCP_NODELAY"


@dataclass(frozen=True)
class Push:
    """Options shared by every donor pass."""

    url: str  # rsync://[user@]host:port/module
    whole_file: bool = True
    rsh: str = ""
    bwlimit_kib: int = 0  # per rsync process; 0: unlimited
    # Why a pass failed, from its stderr (the tunnel's TLS verdict): the runner's Stage.explain.
    explain: Callable[[Sequence[str]], str] | None = field(default=None, compare=False)
    password_file: str = ""  # 0600, in the private run directory; never argv or env
    # Into the joiner's basis: equal files (by checksum) are skipped; changed ones go whole
    # with whole_file (a LAN), else as deltas against the joiner's old copy.
    basis: bool = False

    def link(self) -> tuple[str, ...]:
        """How the pass reaches the joiner: through the TLS tunnel (`--rsh`), or straight
        to its daemon with TCP_NODELAY. rsync's protocol exchanges small messages that
        Nagle's algorithm holds for the peer's delayed ACK (40 ms on Linux): three such
        waits made every pass cost about 140 ms on loopback, 10 ms with the option on both
        ends (the daemon's side: daemon_conf)."""
        return (f"--rsh={self.rsh}",) if self.rsh else (f"--sockopts={NODELAY}",)

    def auth(self) -> tuple[str, ...]:
        """`--password-file=` when the joiner's module demands authentication."""
        return (f"--password-file={self.password_file}",) if self.password_file else ()

    def common(self, *, delete: bool = True, compare: bool = True) -> tuple[str, ...]:
        """Flags on every pass (a list of files is sent without --delete). No --inplace: a
        staged joiner shares inodes with its old copy. Into a basis, files whose content is
        equal are skipped (--checksum) unless compare is False (a list of files known to
        have changed since the pre-copy: --ignore-times, every one is sent). The files sent
        go whole with whole_file, else as deltas (against the basis, if any): the receiver
        writes a changed file anew either way, and on a LAN the wire is faster than rsync's
        search for matching blocks (docs/contract.md 6.2, "Into a stale joiner's basis")."""
        out = ["--owner", "--group", "--perms", "--links", "--specials"]
        out.append("--checksum" if self.basis and compare else "--ignore-times")
        out += ["--delete", "--quiet"] if delete else ["--quiet"]
        if self.whole_file:
            out.append("--whole-file")
        out += self.link()
        if self.bwlimit_kib:
            out.append(f"--bwlimit={self.bwlimit_kib}")
        return (*out, *self.auth())


def top_level_pass(binary: str, push: Push, datadir: str) -> tuple[str, ...]:
    """Pass 1: the datadir's directories (not recursive) and the binlog tar."""
    filters: list[str] = []
    for name in (*EXCLUDED_TOP, *EXCLUDED_OURS):
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


# Names a split database pass may list in its filter rules: no wildcard (`*?[`), backslash,
# white space or line break, so that `+ /name` matches exactly that name. Any other entry
# goes with the part that carries everything else.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_@#$+.-]+")  # MariaDB spells other characters @XXXX


def plain_name(name: str) -> bool:
    """Whether a file name can stand verbatim in a filter rule (see _PLAIN_NAME)."""
    return _PLAIN_NAME.fullmatch(name) is not None and name not in (".", "..")


def split_names(sizes: dict[str, int], parts: int) -> list[list[str]]:
    """Given the plain file names of one directory with their sizes and a number of
    parts: the names spread over at most parts groups of about equal bytes (largest first,
    each into the group with the fewest bytes so far), groups sorted by name; fewer
    groups when there are fewer names."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(parts, len(sizes))))]
    totals = [0] * len(groups)
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        i = totals.index(min(totals))
        groups[i].append(name)
        totals[i] += sizes[name]
    return [sorted(g) for g in groups if g]


def database_part_passes(
    binary: str, push: Push, datadir: str, db: str, groups: Sequence[Sequence[str]]
) -> list[tuple[str, ...]]:
    """Pass 6 split over parallel rsyncs (docs/contract.md 6.2): given the directory's
    plain file names in groups, one pass per group but the last, each carrying only its
    names (`+ /name`, then `- /*`), and last the whole directory's pass without the other
    groups' names (`- /name`): it carries the last group and every other entry
    (directories, names no filter can spell, files created meanwhile). Together they carry
    what the unsplit pass does, each file once, but none deletes: a --delete running beside
    another part would remove that part's temporary files (`.name.XXXXXX`) under it. The
    directory's deletion pass (deletion_pass of the whole pass) runs after all of them."""
    whole = database_pass(binary, push, datadir, db)
    head = tuple(a for a in whole[:-2] if a != "--delete")
    tail = whole[-2:]
    out = []
    for group in groups[:-1]:
        rules = [x for n in group for x in ("-f", f"+ /{n}")]
        out.append((*head, *rules, "-f", "- /*", *tail))
    others = [x for g in groups[:-1] for n in g for x in ("-f", f"- /{n}")]
    out.append((*head, *others, *tail))
    return out


def deletion_pass(argv: tuple[str, ...], *, top: bool = False) -> tuple[str, ...]:
    """Given a pass's argv: the same pass sending no file the receiver already has
    (`--ignore-existing`): it deletes what the donor no longer has (`--delete`) and creates
    what the receiver lacks, reading no file that both sides hold. For the top level
    (`top`), a database directory that is a symlink on the donor is sent as the directory
    it is on the receiver (`--copy-dirlinks`): the top-level filter would otherwise leave the
    link out and delete the receiver's directory, which no full pass recreates here."""
    rest = (a for a in argv[1:] if a != "--checksum")  # it would read every file for nothing
    return (argv[0], "--ignore-existing", *(("--copy-dirlinks",) if top else ()), *rest)


def files_from(paths: Sequence[str]) -> bytes:
    """A `--files-from --from0` list of paths relative to the pass's root. Each entry starts
    with `./`, which rsync removes: an entry starting with `#` or `;` (`#sql-*.ibd`) would
    otherwise be read as a comment and skipped."""
    return b"".join(b"./" + os.fsencode(p) + b"\0" for p in paths)


def list_pass(
    binary: str,
    push: Push,
    source_dir: str,
    dest_url: str,
    list_file: str,
    *,
    how: str = "",
) -> tuple[str, ...]:
    """The files named in list_file (files_from) from source_dir to the module at dest_url,
    each sent whole (or by delta in WAN mode) whatever the receiver holds; in a pre-copy
    with records (how, and `--ignore-missing-args`: a listed file gone by then is no
    failure), "whole" the same, "compare" only those whose checksum differs (`--checksum`),
    "missing" only those the receiver lacks (`--ignore-existing`: it reads no other). No
    --delete (the deletion pass does that); --no-implied-dirs, so that a path through a
    symlinked database directory is read through it and lands in the receiver's directory
    (a list names the directories it needs before their files)."""
    extra = {"": (), "whole": (), "compare": (), "missing": ("--ignore-existing",)}[how]
    return (
        binary,
        *extra,
        *push.common(delete=False, compare=how == "compare"),
        *(("--ignore-missing-args",) if how else ()),
        f"--files-from={list_file}",
        "--from0",
        "--no-implied-dirs",
        f"{source_dir}/",
        dest_url,
    )


def magic_pass(binary: str, push: Push, magic_path: str) -> tuple[str, ...]:
    """The completion file, sent last."""
    return (
        binary,
        *push.link(),
        *push.auth(),
        "--archive",
        "--quiet",
        "--checksum",
        magic_path,
        push.url,
    )


def origin_pass(binary: str, push: Push, origin_path: str) -> tuple[str, ...]:
    """The origin file (the donor's `uuid:seqno`), sent first: the joiner keeps what arrived
    after it when the transfer fails (sst/resume.py)."""
    return (binary, *push.link(), *push.auth(), "--archive", "--quiet", origin_path, push.url)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BASIS_TAIL = re.compile(r"_b([0-9a-f]{32})")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def cluster_uuid(text: str) -> str:
    """Given a `uuid:seqno` (or a bare uuid), the lower-case uuid; '' when it is missing,
    malformed or all zeros (no cluster)."""
    uuid = text.strip().split(":", 1)[0].lower()
    return uuid if _UUID.fullmatch(uuid) and uuid != ZERO_UUID else ""


def basis_module_name(module: str, uuid: str) -> str:
    """The announced module of a joiner that offers its data of cluster uuid as a basis;
    the module itself when uuid is '' (no basis)."""
    return f"{module}_b{uuid.replace('-', '')}" if uuid else module


def announced_basis(module: str) -> str:
    """Given the module a joiner announced, the cluster uuid of its basis; '' when it
    offers none (a stock joiner, or ours with no cluster data)."""
    m = _BASIS_TAIL.search(module)
    if m is None or m.end() != len(module):
        return ""
    h = m.group(1)
    return cluster_uuid(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


_OURS = re.compile(r".*_[0-9a-f]{32}(_b[0-9a-f]{32})?")


def announced_by_galera_sst(module: str) -> bool:
    """Whether an announced module has our joiner's per-SST token (a stock joiner announces
    its configured name, `rsync_sst` by default)."""
    return _OURS.fullmatch(module) is not None


def basis_decision(announced: str, donor_gtid: str) -> tuple[bool, str]:
    """The donor's rule: push into the joiner's basis only when the joiner's data belongs
    to the donor's own cluster. Given the announced module and the donor's `uuid:seqno`;
    returns (use the basis, the reason as one log phrase)."""
    joiner_uuid = announced_basis(announced)
    ours = cluster_uuid(donor_gtid)
    if not joiner_uuid:
        return False, "the joiner offers no basis (no cluster data, or not galera-sst's)"
    if not ours:
        return False, f"the donor's own state UUID is unknown (--gtid {donor_gtid!r})"
    if joiner_uuid != ours:
        return False, (
            f"the joiner's data belongs to cluster {joiner_uuid}, not this cluster {ours}"
        )
    return True, f"same cluster UUID {ours}: only changed files are sent"


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


def record_module(base: str, record: str) -> str:
    """The configured module name with the joiner's record id (records.NONE: it holds none
    but keeps one), before the per-SST token (module_name) and any basis tail: a donor of
    an earlier release still finds its token and basis where it looks for them."""
    return f"{base}_r{record}"


_RECORD = re.compile(r"_r([0-9a-f]{32})_[0-9a-f]{32}(?:_b[0-9a-f]{32})?")


def announced_record(module: str) -> str | None:
    """Given the module a joiner announced: the record id it holds (records.NONE for none),
    or None when it keeps no record (a stock joiner, an earlier release, in place)."""
    m = _RECORD.search(module)
    return m.group(1) if m is not None and m.end() == len(module) else None


def module_name(base: str, token: str) -> str:
    """The announced module: the configured (or default) name plus a per-SST random token,
    so that only a peer who saw the `ready` address can name it (docs/tls.md 2, rsync daemon)."""
    return f"{base}_{token}"


def secrets_text(secret: str) -> str:
    """The joiner's `secrets file`: one `user:password` line for AUTH_USER."""
    return f"{AUTH_USER}:{secret}\n"


def password_text(secret: str) -> str:
    """The donor's `--password-file`: the password on its first line."""
    return f"{secret}\n"


def daemon_owner(euid: int, uid: int, gid: int) -> tuple[int, int] | None:
    """Given our euid and the datadir's owner, the uid/gid the daemon's transfers run as:
    the datadir's owner when we are root (root only for root's datadir), None (no change,
    we are not root) otherwise."""
    return (uid, gid) if euid == 0 else None


@dataclass(frozen=True)
class Daemon:
    """What the joiner's rsync daemon serves and how it guards it."""

    pid_file: str
    modules: Sequence[tuple[str, str]]  # (name, path)
    timeout: int
    owner: tuple[int, int] | None = None  # uid, gid of the transfers (see daemon_owner)
    secrets_file: str = ""  # demand rsync authentication of AUTH_USER (ours to ours)
    refuse_inplace: bool = False
    # Daemon-excluded patterns (module-relative, no white space): a donor can neither write
    # nor delete them; an in-place joiner protects its own files in the live datadir.
    protect: tuple[str, ...] = ()
    # Modules onto hard links of the old files: --inplace would write into the live inodes.
    basis_modules: Sequence[tuple[str, str]] = ()


RECEIVED_TAG = "galera-sst-received"
_RECEIVED = re.compile(RECEIVED_TAG + r" (\d+) (\d+) ")


class Received:
    """What the joiner's daemon received, from its transfer log lines (`%b %l %n`: bytes
    that crossed the wire, the file's length, its name): feed watch() with the daemon's
    stderr lines. on_magic is called when the completion file's line comes: rsync logs a
    file just before it renames it into place, so the file is there a moment later."""

    def __init__(self, on_magic: Callable[[], None] | None = None) -> None:
        self.files = 0
        self.wire = 0
        self.length = 0
        self.on_magic = on_magic

    def watch(self, line: str) -> None:
        """on_line callback for the daemon (or stunnel running it)."""
        m = _RECEIVED.search(line)
        if m:
            self.files += 1
            self.wire += int(m.group(1))
            self.length += int(m.group(2))
            if self.on_magic is not None and line[m.end() :].strip() == MAGIC_FILE:
                self.on_magic()

    def summary(self) -> str:
        """One phrase for the log."""
        return (
            f"{self.files} file(s) of {self.length / 2**20:.1f} MiB arrived, "
            f"{self.wire / 2**20:.1f} MiB of it over the wire"
        )


def daemon_conf(d: Daemon) -> str:
    """rsyncd.conf text, given the daemon's settings; raises ConfigError for a path with a
    line break. Every module is write-only and unlisted; received directories become
    private and set-id bits are cleared; with a secrets file the donor must authenticate.
    Devices and specials are refused after the transfer (the stock donor's flags need -D:
    refusing it here would fail a stock donor): docs/tls.md 2, rsync daemon."""
    refuse = "devices inplace" if d.refuse_inplace else "devices"
    lines = [
        f"pid file = {conf_path(d.pid_file)}",
        "use chroot = no",
        "read only = no",
        "write only = yes",
        "list = no",
        f"timeout = {d.timeout}",
        f"socket options = {NODELAY}",  # see Push.link
        "log file = /dev/stderr",  # errors (a full disk) reach the supervisor, not syslog
        f"refuse options = {refuse}",
        f"incoming chmod = {INCOMING_CHMOD}",
        "transfer logging = yes",  # one line per received file: Received counts them
        f"log format = {RECEIVED_TAG} %b %l %n",
    ]
    if d.owner is not None:
        lines += [f"uid = {d.owner[0]}", f"gid = {d.owner[1]}"]
    if d.secrets_file:
        lines += [f"auth users = {AUTH_USER}", f"secrets file = {conf_path(d.secrets_file)}"]
        lines.append("strict modes = yes")
    for name, path in d.modules:
        excludes = " ".join((".zfs", *d.protect))
        lines += [f"[{name}]", f"    path = {conf_path(path)}", f"    exclude = {excludes}"]
    for name, path in d.basis_modules:
        lines += [f"[{name}]", f"    path = {conf_path(path)}", "    exclude = .zfs"]
        lines.append("    refuse options = devices inplace")
    return "\n".join(lines) + "\n"


def daemon_argv(binary: str, conf: str, port: int, address: str) -> tuple[str, ...]:
    """A foreground rsync daemon bound to one address."""
    out = [binary, "--daemon", "--no-detach", "--port", str(port), "--config", conf]
    if address:
        out += ["--address", address]
    return tuple(out)


def server_execargs(conf_name: str) -> str:
    """What stunnel runs per connection. stunnel splits execargs at white space and knows no
    quoting (docs/contract.md 5.4: the stock script falls back to `$SHELL -c`), so the rsync
    configuration is named relative to stunnel's working directory, the private run
    directory, whatever that directory's own path holds.

    Given the configuration's bare file name; returns the execargs value; raises ConfigError
    for a name with a directory part or white space (a programming error, never user input).
    """
    if not conf_name or "/" in conf_name or any(c.isspace() for c in conf_name):
        raise ConfigError(f"rsync config name must be a bare file name: {conf_name!r}")
    return f"rsync --server --daemon --config={conf_name} ."
