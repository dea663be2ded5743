"""Which MariaDB is on each side of a mariabackup SST, and the one pairing refused.

A backup is made by the donor's mariadb-backup and prepared by the joiner's; an older
mariadb-backup cannot be trusted with a newer series' backup (and an older server cannot
start on what it would make), so a joiner of an older series than its donor refuses the
transfer after stage 1, before any data moves. Our donor says which mariadb-backup it runs in
a file of its own in stage 1 (`DONOR_VERSION_FILE`, which stock joiners ignore); a stock donor
sends none, and then nothing is checked.
"""

from __future__ import annotations

import errno
import os
import re

from sst.errors import SSTError
from sst.process.runner import run_capture

DONOR_VERSION_FILE = "galera_sst_donor_version"
NEW_INFO_FILE = "mariadb_backup_galera_info"  # a MariaDB 11 donor's stage-1 state file
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)-MariaDB")


def backup_version(binary: str) -> str:
    """The MariaDB version of the mariadb-backup at binary ('' if it does not say)."""
    res = run_capture((binary, "--version"), timeout=30)
    m = _VERSION.search(res.stdout + res.stderr)
    return ".".join(m.groups()) if m else ""


def series(version: str) -> tuple[int, int]:
    """'11.8.3' -> (11, 8)."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def write_donor_version(directory: str, binary: str) -> list[str]:
    """The donor's stage-1 file naming its mariadb-backup version; the names written."""
    version = backup_version(binary)
    if not version:
        return []
    with open(os.path.join(directory, DONOR_VERSION_FILE), "w", encoding="utf-8") as f:
        f.write(version + "\n")
    return [DONOR_VERSION_FILE]


def check_donor_version(statdir: str, binary: str) -> None:
    """Raise unless this joiner's mariadb-backup (binary) can prepare the donor's backup,
    as told by stage 1 in statdir; a donor that did not say passes."""
    try:
        with open(os.path.join(statdir, DONOR_VERSION_FILE), encoding="utf-8") as f:
            theirs = f.readline().strip()
    except FileNotFoundError:
        _check_stock_donor(statdir, binary)
        return
    if not _VERSION.fullmatch(theirs + "-MariaDB"):
        return
    ours = backup_version(binary)
    if not ours or series(theirs) <= series(ours):
        return
    raise SSTError(
        f"the donor runs MariaDB {theirs} and this joiner's mariadb-backup is {ours}: a backup "
        f"of MariaDB {'.'.join(map(str, series(theirs)))} cannot be prepared by an older "
        "mariadb-backup; upgrade this node first, or join it from a donor of its own "
        "version (nothing in the datadir was changed)",
        errno.EPROTONOSUPPORT,
    )


def _check_stock_donor(statdir: str, binary: str) -> None:
    """A stock donor names no version, but one of MariaDB 11 sends its state as
    mariadb_backup_galera_info (10.11 sends xtrabackup_galera_info): refused by a 10.x
    joiner, as stock 10.11 does at this point (docs/findings.md, MariaDB 11.8)."""
    if not os.path.exists(os.path.join(statdir, NEW_INFO_FILE)):
        return
    ours = backup_version(binary)
    if ours and series(ours) < (11, 0):
        raise SSTError(
            f"the donor runs MariaDB 11 or later (its state files are named {NEW_INFO_FILE}) "
            f"and this joiner's mariadb-backup is {ours}: an older mariadb-backup cannot "
            "prepare its backup; upgrade this node first, or join it from a donor of its own "
            "version (nothing in the datadir was changed)",
            errno.EPROTONOSUPPORT,
        )
