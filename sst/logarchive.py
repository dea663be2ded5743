"""sst-log-archive and sst-log-archive-dir: keep mariabackup's previous logs, as stock.

The stock mariabackup script, at the start of every run (either role, SST or IST), moves
each of `mariabackup.prepare.log`, `mariabackup.move.log` and `mariabackup.backup.log`
that exists in the datadir to `<dir>/<name>.<YYYY.mm.dd-HH.MM.SS.nnnnnnnnn>` and gzips
it, with `[sst] sst-log-archive` (default 1; 0 deletes nothing and archives nothing: the
next run overwrites) and `[sst] sst-log-archive-dir` (default `/tmp/sst_log_archive`;
created if missing, on every run; when it cannot be created or written, the log is archived beside
itself in the datadir, with a warning). MariaDB's test `galera_sst_mariabackup_logarchive`
counts the archives.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time

from sst import log

LOGS = ("mariabackup.prepare.log", "mariabackup.move.log", "mariabackup.backup.log")
DEFAULT_DIR = "/tmp/sst_log_archive"


def stamp(now: float | None = None) -> str:
    """`date '+%Y.%m.%d-%H.%M.%S.%N'` (local time, nanoseconds)."""
    ns = time.time_ns() if now is None else int(now * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y.%m.%d-%H.%M.%S", time.localtime(secs)) + f".{frac:09d}"


def _usable_dir(directory: str) -> str:
    if not directory:
        return ""
    directory = directory.rstrip("/") or "/"
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            log.warning(f"Unable to create '{directory}' directory: {exc.strerror}")
            return ""
    elif not os.access(directory, os.W_OK):
        log.warning(f"The '{directory}' directory is not writable")
        return ""
    st = os.lstat(directory)
    if os.path.islink(directory) or st.st_uid not in (os.geteuid(), 0):
        # The default lies in /tmp: another user may have made it first, to read our logs.
        log.warning(f"The '{directory}' directory belongs to another user; not used")
        return ""
    return directory


def archive(datadir: str, enabled: str, directory: str, now: float | None = None) -> list[str]:
    """Given the datadir and the two options' values (as read: `enabled` "" means the
    default 1, `directory` "" the default directory), archives the previous logs; returns
    the archives written."""
    try:
        on = int(enabled or "1") != 0
    except ValueError:
        log.warning(f"sst-log-archive={enabled!r} is not a number; archiving the logs")
        on = True
    if not on:
        return []
    when = stamp(now)
    # As stock: the directory is made on every run, logs to move or not (MariaDB's test
    # galera_sst_mariabackup_logarchive lists it after the first SST of a fresh cluster).
    target = _usable_dir(directory or DEFAULT_DIR)
    present = [os.path.join(datadir, n) for n in LOGS if os.path.lexists(os.path.join(datadir, n))]
    done: list[str] = []
    for path in present:
        if os.path.islink(path) or not os.path.isfile(path):
            log.warning(f"'{path}' is not a regular file; not archived")
            continue
        name = os.path.basename(path) + "." + when
        newfile = os.path.join(target, name) if target else path + "." + when
        log.info(f"Moving '{path}' to '{newfile}'")
        try:
            with open(path, "rb") as src, gzip.open(newfile + ".gz", "xb") as dst:
                shutil.copyfileobj(src, dst)
            os.unlink(path)
        except OSError as exc:
            log.warning(f"Failed to archive log file ('{newfile}'): {exc.strerror or exc}")
            continue
        done.append(newfile + ".gz")
    return done
