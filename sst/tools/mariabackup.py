"""mariadb-backup and mbstream: backup, prepare and move-back argv; the credentials file."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

INFO_FILE = "xtrabackup_galera_info"  # what our donor sends: stock 10.11 and 11.8 read it
DONOR_INFO_FILE = "donor_galera_info"
IST_FILE = "xtrabackup_ist"
CHECKPOINTS = "xtrabackup_checkpoints"
BINLOG_INFO = "xtrabackup_binlog_info"
# mariadb-backup 11.x writes mariadb_backup_* where 10.11 writes xtrabackup_*, and the stock
# 11.8 donor sends mariadb_backup_galera_info in stage 1; a joiner reads either name.
NEW_PREFIX = "mariadb_backup_"
LEGACY_FILES = (
    "xtrabackup_binary",
    "xtrabackup_pid",
    "xtrabackup_checkpoints",
    "xtrabackup_info",
    "xtrabackup_slave_info",
    "xtrabackup_binlog_info",
    "xtrabackup_binlog_pos_innodb",
    "mariadb_backup_checkpoints",
    "mariadb_backup_info",
    "mariadb_backup_slave_info",
    "mariadb_backup_binlog_info",
    "mariadb_backup_binlog_pos_innodb",
)


def either(directory: str, name: str) -> str:
    """The path of name (xtrabackup_*) in directory, or of its 11.x mariadb_backup_* twin
    when only that one is there."""
    path = os.path.join(directory, name)
    twin = os.path.join(directory, NEW_PREFIX + name.removeprefix("xtrabackup_"))
    return twin if not os.path.exists(path) and os.path.exists(twin) else path


@dataclass(frozen=True)
class Common:
    """Options every mariadb-backup run of one SST shares."""

    binary: str
    server_dirs: tuple[str, ...] = ()  # --innodb-data-home-dir=... etc.
    use_memory: str = ""
    mysqld_args: tuple[str, ...] = ()

    def tail(self) -> tuple[str, ...]:
        """Server directories and memory (INNOEXTRA without the connection)."""
        mem = (f"--use-memory={self.use_memory}",) if self.use_memory else ()
        return (*self.server_dirs, *mem)

    def mysqld(self) -> tuple[str, ...]:
        """`--mysqld-args ...`, always last."""
        return ("--mysqld-args", *self.mysqld_args) if self.mysqld_args else ()


# How often (ms) mariadb-backup's redo log thread looks for new log. Under BACKUP STAGE
# BLOCK_DDL and BLOCK_COMMIT, while the donor's writes wait, mariadb-backup waits for that
# thread to reach an LSN, up to one interval each time: its default of 1000 ms adds up to
# 2 s of blocked writes (docs/performance.md, "Under write load"). The value changes only
# when the log is read, never what is copied; inno-backup-opts can set another.
LOG_COPY_INTERVAL_MS = 10


def _head(c: Common, defaults: Sequence[str], action: str, parallel: int) -> tuple[str, ...]:
    """The binary, its defaults options, the action and `--parallel` when given."""
    return (c.binary, *defaults, action, *((f"--parallel={parallel}",) if parallel else ()))


def backup_argv(
    c: Common,
    defaults: Sequence[str],
    *,
    socket: str,
    tmpdir: str,
    target_dir: str,
    datadir: str,
    parallel: int,
    extra: Sequence[str],
) -> tuple[str, ...]:
    """`mariadb-backup --backup --stream=mbstream` to stdout (credentials in defaults)."""
    return (
        *_head(c, defaults, "--backup", parallel),
        "--databases-exclude=lost+found",
        f"--log-copy-interval={LOG_COPY_INTERVAL_MS}",
        *extra,  # after ours: the last occurrence of an option wins
        f"--tmpdir={tmpdir}",
        *c.tail(),
        f"--socket={socket}",
        "--galera-info",
        "--stream=mbstream",
        f"--target-dir={target_dir}",
        f"--datadir={datadir}",
        *c.mysqld(),
    )


# mariadb-backup's stage lines. On a Galera node the server desyncs and pauses the provider
# inside BACKUP STAGE BLOCK_DDL (sql/backup.cc), so no transaction commits from there until
# BACKUP STAGE END has run ("All tables unlocked").
STAMP = re.compile(r"^\[\d+\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # "[00] 2026-11-30 05:46:24 "
BLOCK_DDL_START = "Started BACKUP STAGE BLOCK_DDL"
BLOCK_COMMIT_START = "Starting BACKUP STAGE BLOCK_COMMIT"
UNLOCKED = "All tables unlocked"


@dataclass
class LockClock:
    """When mariadb-backup's blocking stages began and ended, from its stderr lines as they
    arrive (feed each line; the clock is injectable for tests)."""

    clock: Callable[[], float] = time.monotonic
    marks: dict[str, float] = field(default_factory=dict)
    last: tuple[float, str] = (0.0, "")  # the previous line while the locks are held
    longest: tuple[float, str] = (0.0, "")  # the longest silence then, and the line before

    def feed(self, line: str) -> None:
        """Note the time of the first line carrying each stage mark, and while the locks
        are held the longest silence between two lines (what mariadb-backup waited for)."""
        now = self.clock()
        for mark in (BLOCK_DDL_START, BLOCK_COMMIT_START, UNLOCKED):
            if mark in line and mark not in self.marks:
                self.marks[mark] = now
        if (BLOCK_DDL_START in self.marks and UNLOCKED not in self.marks) or UNLOCKED in line:
            if self.last[1] and now - self.last[0] > self.longest[0]:
                self.longest = (now - self.last[0], self.last[1])
            self.last = (now, STAMP.sub("", line.strip())[:100])

    def blocked(self) -> tuple[float, float] | None:
        """(seconds from BLOCK_DDL to the unlock, seconds from BLOCK_COMMIT to it), or None
        when mariadb-backup did not log all three in that order."""
        m = self.marks
        if not all(k in m for k in (BLOCK_DDL_START, BLOCK_COMMIT_START, UNLOCKED)):
            return None
        ddl, commit, end = m[BLOCK_DDL_START], m[BLOCK_COMMIT_START], m[UNLOCKED]
        if not ddl <= commit <= end:
            return None
        return end - ddl, end - commit


def prepare_argv(
    c: Common, *, target_dir: str, force_recovery: str, extra: Sequence[str]
) -> tuple[str, ...]:
    """`mariadb-backup --prepare` in the staging directory."""
    rec = (f"--innodb-force-recovery={force_recovery}",) if force_recovery else ()
    return (
        c.binary,
        "--prepare",
        *rec,
        *extra,
        *c.tail(),
        f"--target-dir={target_dir}",
        f"--datadir={target_dir}",
        *c.mysqld(),
    )


def move_back_argv(
    c: Common,
    defaults: Sequence[str],
    *,
    target_dir: str,
    datadir: str,
    parallel: int,
    extra: Sequence[str],
) -> tuple[str, ...]:
    """`mariadb-backup --move-back` from staging into the (set aside) live datadir."""
    return (
        *_head(c, defaults, "--move-back", parallel),
        *extra,
        *c.tail(),
        "--galera-info",
        "--force-non-empty-directories",
        f"--target-dir={target_dir}",
        f"--datadir={datadir}",
    )


def mbstream_create(binary: str, files: Sequence[str]) -> tuple[str, ...]:
    """Stream files (relative to the cwd) as mbstream."""
    return (binary, "-c", *files)


def mbstream_extract(binary: str) -> tuple[str, ...]:
    """Extract an mbstream on stdin into the cwd."""
    return (binary, "-x")
