"""Every option a method reads, as data: name, groups, default, kind (its validation),
methods and meaning. The settings loaders (sst/config.py) read values through it, `galera-sst
check` shows the ones set, and README's option tables are rendered from it
(`galera-sst options --readme README.md` rewrites them; a test fails when they drift).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MYSQLD = "--mysqld"  # every group mariadbd itself reads
SST = ("sst",)
SERVER_SST = (MYSQLD, "sst")
ENC = (MYSQLD, "sst", "xtrabackup mariabackup")  # mariabackup's TLS and general options
BACKUP_TOOL = ("sst", "xtrabackup mariabackup")  # options for mariadb-backup itself
CLIENT = "client client-server mysql mariadb-client client-mariadb"

# Kinds: how a value is checked (sst/config.py `checked`).
SECONDS = "seconds"  # a number >= 0
COUNT = "count"  # a number (sst-max-binlogs: negative means all)
THREADS = "threads"  # a number >= 1
RATE = "rate"  # bytes/s with k/m/g/t suffixes, as pv
ARGV = "argv"  # a command, split like a shell would, never run by one
SWITCH = "switch"  # 1/0, on/off, yes/no, true/false
TEXT = "text"  # free text (paths, modes checked by the method)


@dataclass(frozen=True)
class Option:
    """One row of the table: an option as one or more methods read it."""

    names: tuple[str, ...]  # several names share a row when they go together (ssl-ca, ...)
    groups: tuple[str, ...]  # group sets in the order the value is looked up (): as ssl-*
    default: str  # what an unset option means ('' none); the code reads it from here
    methods: tuple[str, ...]  # method families
    meaning: str
    kind: str = TEXT
    shown: str = ""  # the default as README shows it, when it is not a literal value
    secret: bool = False  # never shown (`check` prints *** for it)

    @property
    def name(self) -> str:
        """The first name (the one the code looks up)."""
        return self.names[0]


TLS_MEANING = (
    "`DISABLED`, `REQUIRED` (encrypt, no authentication), `VERIFY_CA`, `VERIFY_IDENTITY`. "
    "Unset: `VERIFY_CA` if a CA is configured, `REQUIRED` if cert and key are, else off"
)
TABLE: tuple[Option, ...] = (
    # rsync and rsync_wan
    Option(("ssl-mode",), SERVER_SST, "", ("rsync",), TLS_MEANING, shown="derived"),
    Option(
        ("ssl-ca", "ssl-capath", "ssl-cert", "ssl-key"),
        SERVER_SST,
        "",
        ("rsync",),
        "TLS files; `[mysqld]` values win over `[sst]`, as with stock",
    ),
    # mariabackup
    Option(
        ("encrypt",),
        ENC,
        "0",
        ("mariabackup",),
        "0 none (TLS still on if `ssl-mode` asks), 2/3/4 TLS as stock (the joiner listens "
        "with socat, our donor connects through stunnel); 1 openssl stream encryption with "
        "a shared key, as stock (no authentication: prefer TLS)",
    ),
    Option(
        ("encrypt-format",),
        ENC,
        "openssl",
        ("mariabackup",),
        "encrypt=1: only `openssl` (`xbcrypt` is refused: Debian ships no xbcrypt)",
    ),
    Option(
        ("encrypt-algo",),
        ENC,
        "",
        ("mariabackup",),
        "encrypt=1: an `openssl enc` cipher, e.g. `aes-256-ctr` (required)",
    ),
    Option(
        ("encrypt-key",),
        ENC,
        "",
        ("mariabackup",),
        "encrypt=1: the shared key (at most 127 characters); handed to openssl in a 0600 "
        "file, never on a command line",
        secret=True,
    ),
    Option(
        ("encrypt-key-file",),
        ENC,
        "",
        ("mariabackup",),
        "encrypt=1, when `encrypt-key` is unset: a file whose first line is the key",
    ),
    Option(
        ("ssl-mode",),
        ENC,
        "DISABLED",
        ("mariabackup",),
        "as for rsync; VERIFY_* or encrypt=2/4 without a CA is refused (stock silently drops "
        "authentication)",
    ),
    Option(
        ("ssl-ca", "ssl-capath", "ssl-cert", "ssl-key"),
        ENC,
        "",
        ("mariabackup",),
        "TLS files, first group with a value wins",
    ),
    # TLS overrides and legacy names, as rsync and mariabackup read them
    Option(
        ("ssl-server-*", "ssl-client-*"),
        (),
        "",
        ("rsync", "mariabackup"),
        "joiner-only / donor-only overrides of the `ssl-*` files",
        shown="the generic value",
    ),
    Option(
        ("tca", "tcapath", "tcert", "tkey"),
        SST,
        "",
        ("rsync", "mariabackup"),
        "legacy names; if any is set the `ssl-*` options are ignored",
    ),
    # rsync and rsync_wan, continued
    Option(
        ("sst-max-binlogs",),
        SERVER_SST,
        "1",
        ("rsync",),
        "newest binlogs sent (0 none, negative all)",
        COUNT,
    ),
    Option(
        ("backup-threads",),
        SERVER_SST,
        "",
        ("rsync",),
        "parallel rsync streams for database directories",
        THREADS,
        shown="CPU count (min 2)",
    ),
    Option(
        ("tmpdir",),
        SERVER_SST,
        "",
        ("rsync",),
        "where the private run directory goes",
        shown="system",
    ),
    Option(
        ("sst-initial-timeout",),
        SST,
        "300",
        ("rsync",),
        "joiner: seconds to wait for the donor's first byte (0 = none)",
        SECONDS,
    ),
    Option(
        ("sst-idle-timeout",),
        SST,
        "300",
        ("rsync",),
        "seconds without progress before the transfer is declared stalled",
        SECONDS,
    ),
    Option(
        ("sst-resume-max-age",),
        SST,
        "86400",
        ("rsync",),
        "joiner: seconds a failed transfer's data is kept for the next SST to resume from "
        "(0 = never kept); also dropped when its file system is under 10% free",
        SECONDS,
    ),
    Option(
        ("sst-flush-timeout",),
        SST,
        "600",
        ("rsync", "backup"),
        "donor: seconds to wait for FLUSH TABLES WITH READ LOCK",
        SECONDS,
    ),
    Option(
        ("rlimit",),
        SST,
        "",
        ("rsync",),
        "donor: rate limit per rsync stream, as `--bwlimit` (bytes/s, `k`/`m`/`g` suffixes as pv)",
        RATE,
    ),
    Option(
        ("rsync-precopy",),
        SST,
        "1",
        ("rsync",),
        "donor: copy the datadir before FLUSH TABLES WITH READ LOCK, then under the lock only "
        "what changed since (the redo log first, new and changed files, deletions), so that "
        "writes are refused for the delta, not the whole copy; 0: everything under the lock, "
        "as stock (docs/contract.md 6.2)",
        SWITCH,
    ),
    Option(
        ("rsync-records",),
        SST,
        "1",
        ("rsync",),
        "both roles (py_rsync, rsync): keep a record of each SST (each file's inode, size, "
        "mtime and ctime) so that a stale rejoin from the same donor, in the same boot, skips "
        "unread the files neither side changed since; 0: no record, every file compared by "
        "checksum, which also replaces a file a disk corrupted silently (docs/contract.md 6.2)",
        SWITCH,
    ),
    Option(
        ("ssl-peer-certs",),
        SST,
        "",
        ("rsync",),
        "a PEM file of the only peer certificates accepted, both roles (stunnel `verifyPeer`; "
        "VERIFY modes only; `docs/tls.md` 5)",
    ),
    Option(
        ("staging",),
        SST,
        "auto",
        ("rsync", "mariabackup"),
        "joiner: `always` receives a second copy and swaps it in (a failure keeps the old "
        "datadir; needs room for both); `in-place` overwrites the old datadir as the stock "
        "rsync script does (one copy; a failure leaves no usable data); `auto` stages while "
        "the filesystem has room for the incoming copy plus a margin, else goes in place "
        "(README, Staging)",
    ),
    # mariabackup, continued
    Option(("transferfmt",), SST, "socat", ("mariabackup",), "only `socat` is supported"),
    Option(
        ("streamfmt",),
        SST,
        "mbstream",
        ("mariabackup",),
        "`mbstream` (or `xbstream`); mariadb-backup cannot produce tar",
    ),
    Option(
        ("compressor",),
        SST,
        "",
        ("mariabackup",),
        "e.g. `zstd -1 -T2`; run as an argument list, never through a shell",
        ARGV,
    ),
    Option(
        ("decompressor",),
        SST,
        "",
        ("mariabackup",),
        "e.g. `zstd -d`; run as an argument list, never through a shell",
        ARGV,
    ),
    Option(
        ("backup-threads",),
        ENC,
        "",
        ("mariabackup",),
        "`--parallel` for backup and move-back",
        THREADS,
    ),
    Option(
        ("inno-backup-opts",),
        BACKUP_TOOL,
        "",
        ("mariabackup",),
        "extra mariadb-backup options for the backup, after ours (`--log-copy-interval=10`, "
        "which an option here overrides)",
        ARGV,
    ),
    Option(
        ("inno-apply-opts",),
        BACKUP_TOOL,
        "",
        ("mariabackup",),
        "extra mariadb-backup options for prepare",
        ARGV,
    ),
    Option(
        ("inno-move-opts",),
        BACKUP_TOOL,
        "",
        ("mariabackup",),
        "extra mariadb-backup options for move-back",
        ARGV,
    ),
    Option(
        ("use-memory",),
        BACKUP_TOOL,
        "",
        ("mariabackup",),
        "`--use-memory` for every mariadb-backup run",
        shown="innodb_buffer_pool_size",
    ),
    Option(
        ("sst-initial-timeout",),
        SST,
        "300",
        ("mariabackup",),
        "joiner: seconds for the donor's first stage",
        SECONDS,
    ),
    Option(
        ("sst-idle-timeout",),
        SST,
        "300",
        ("mariabackup",),
        "seconds without bytes on the data stream (never during prepare or move-back)",
        SECONDS,
    ),
    Option(
        ("progress",),
        SST,
        "",
        ("mariabackup",),
        "`1`: a pv line in the error log every 10 s; a path: pv writes there; `none`: no pv",
    ),
    Option(("rlimit",), SST, "", ("mariabackup",), "donor: rate limit (pv -L, e.g. `80m`)", RATE),
    Option(("sockopt",), SST, "", ("mariabackup",), "extra socat address options, both sides"),
    Option(
        ("cpat",),
        SST,
        "",
        ("mariabackup",),
        "joiner: depth-1 datadir entries kept across the swap (find-style regex, as stock)",
        shown="stock list",
    ),
    Option(
        ("tmpdir",),
        ENC,
        "",
        ("mariabackup",),
        "where the donor's private working directory goes",
        shown="system",
    ),
    Option(
        ("sst-log-archive",),
        SST,
        "1",
        ("mariabackup",),
        "at the start of every run, move the previous `mariabackup.{prepare,move,backup}.log` "
        "from the datadir to the archive directory, gzipped, as stock (0: overwrite them)",
    ),
    Option(
        ("sst-log-archive-dir",),
        SST,
        "/tmp/sst_log_archive",
        ("mariabackup",),
        "where; made on every run if missing; if it cannot be, beside the log",
    ),
    # mysqldump (donor only)
    Option(
        ("wsrep-sst-auth",),
        SST,
        "",
        ("mysqldump",),
        "`user:password` when mariadbd passes none",
        secret=True,
    ),
    Option(
        ("ssl-mode",),
        SST,
        "",
        ("mysqldump",),
        "TLS to the joiner's server; VERIFY_* without a CA is refused",
    ),
    Option(
        ("ssl-ca", "ssl-capath", "ssl-cert", "ssl-key"),
        (*SST, CLIENT),
        "",
        ("mysqldump",),
        "the client groups' values when `[sst]` has none; with a CA the joiner's server "
        "certificate is verified, name included (`ssl-verify-server-cert`)",
    ),
    Option(
        ("rlimit",),
        SST,
        "",
        ("mysqldump",),
        "`pv -L` between the dump and the joiner's session",
        RATE,
    ),
    Option(
        ("sst-idle-timeout",),
        SST,
        "600",
        ("mysqldump",),
        "seconds without progress before a stalled dump ends (the joiner may build an index "
        "for minutes without reading)",
        SECONDS,
    ),
)


def row(name: str, method: str) -> Option:
    """The row a method reads `name` from; raises KeyError (a bug: every option is listed)."""
    for opt in TABLE:
        if name in opt.names and method in opt.methods:
            return opt
    raise KeyError(f"option {name!r} is not in the table for {method}")


def default(name: str, method: str) -> str:
    """The default of an option as a method reads it."""
    return row(name, method).default


def for_method(method: str) -> list[Option]:
    """The rows one method family reads, in table order."""
    return [opt for opt in TABLE if method in opt.methods]


def _groups(groups: Iterable[str]) -> str:
    if not groups:
        return "as the `ssl-*` files"
    shown = {
        MYSQLD: "`[mysqld]` family",
        "xtrabackup mariabackup": "`[xtrabackup]`/`[mariabackup]`",
        CLIENT: "client groups",
    }
    return ", then ".join(shown.get(g, f"`[{g}]`") for g in groups)


def render(method: str) -> str:
    """The markdown table of one method's options (README)."""
    lines = ["| option | groups | default | meaning |", "| --- | --- | --- | --- |"]
    for opt in for_method(method):
        names = ", ".join(f"`{n}`" for n in opt.names)
        lines.append(
            f"| {names} | {_groups(opt.groups)} | {opt.shown or opt.default} | {opt.meaning} |"
        )
    return "\n".join(lines)


MARK = re.compile(r"(<!-- options:(\w+) -->\n)(.*?)(<!-- /options -->)", re.S)


def render_readme(text: str) -> str:
    """README's text with every `<!-- options:METHOD -->` block rendered from the table."""
    return MARK.sub(lambda m: f"{m.group(1)}{render(m.group(2))}\n{m.group(4)}", text)
