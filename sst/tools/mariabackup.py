"""mariadb-backup and mbstream: backup, prepare and move-back argv; the credentials file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

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
        *extra,
        f"--tmpdir={tmpdir}",
        *c.tail(),
        f"--socket={socket}",
        "--galera-info",
        "--stream=mbstream",
        f"--target-dir={target_dir}",
        f"--datadir={datadir}",
        *c.mysqld(),
    )


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
