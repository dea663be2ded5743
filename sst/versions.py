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


# MariaDB's own programs say the server version they belong to in `--version`, each in its
# own words (`mariadbd  Ver 11.8.9-MariaDB-...`, `mariadb-backup based on MariaDB server
# 10.11.19-MariaDB ...`, `mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, ...`).
MARIADB_PROGRAMS = ("mariadbd", "mariadb-backup", "mariadb", "mariadb-dump", "mysqldump", "mysql")
# The others: the arguments that make each say its version, and where the version is.
_OTHER = {
    "rsync": (("--version",), re.compile(r"rsync\s+version\s+v?(\d+(?:\.\d+)+)")),
    "socat": (("-V",), re.compile(r"socat version (\d+(?:\.\d+)+)")),
    "stunnel": (("-version",), re.compile(r"stunnel (\d+(?:\.\d+)+)")),
    "stunnel4": (("-version",), re.compile(r"stunnel (\d+(?:\.\d+)+)")),
    "pv": (("--version",), re.compile(r"pv (\d+(?:\.\d+)+)")),
}


def asks(name: str) -> bool:
    """Whether tool_version knows how to ask the program `name` its version."""
    return name in MARIADB_PROGRAMS or name in _OTHER


def backup_version(binary: str) -> str:
    """The MariaDB version of the mariadb-backup at binary ('' if it does not say)."""
    return tool_version("mariadb-backup", binary)


def tool_version(name: str, binary: str) -> str:
    """The version the program `name` at binary says it is ('' if it does not say, or if no
    way to ask it is known: mbstream, tar)."""
    if name in MARIADB_PROGRAMS:
        argv, pattern = ("--version",), _VERSION
    elif name in _OTHER:
        argv, pattern = _OTHER[name]
    else:
        return ""
    res = run_capture((binary, *argv), timeout=30)
    m = pattern.search(res.stdout + res.stderr)
    return ".".join(m.groups()) if m else ""


def mismatches(found: dict[str, str]) -> list[tuple[str, str]]:
    """Given program name -> version as found on this host; returns (level, text) for each
    pairing that cannot be trusted: a mariadb-backup of another series than mariadbd fails
    (it refuses such a server, or its backup cannot be prepared and started on it), another
    release of the same series warns; MariaDB's clients (the mysqldump method's) of another
    series warn."""
    server = found.get("mariadbd", "")
    if not _VERSION.fullmatch(server + "-MariaDB"):
        return []
    out = []
    for name in MARIADB_PROGRAMS[1:]:
        theirs = found.get(name, "")
        if not _VERSION.fullmatch(theirs + "-MariaDB") or theirs == server:
            continue
        if name == "mariadb-backup":
            if series(theirs) != series(server):
                out.append(
                    (
                        "fail",
                        f"mariadb-backup {theirs} and mariadbd {server} are of "
                        "different series: mariadb-backup refuses a server of another "
                        "series, or makes a backup it cannot start on",
                    )
                )
            else:
                out.append(
                    (
                        "warn",
                        f"mariadb-backup {theirs} and mariadbd {server} are "
                        "different releases: MariaDB ships them as one version",
                    )
                )
        elif series(theirs) != series(server):
            out.append(("warn", f"{name} {theirs} and mariadbd {server} are of different series"))
    return out


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
