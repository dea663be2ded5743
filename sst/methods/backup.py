"""The backup method: FLUSH TABLES WITH READ LOCK held while nothing moves (docs/contract.md 3.5
and 3.9), so that a site-specific hook can run while the donor is consistent."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sst import log
from sst.config import MYSQLD, option_seconds, read_options
from sst.errors import ConfigError
from sst.methods.common import Run, flush_tables
from sst.process.pidfile import replace_file
from sst.request import Request

MAGIC_FILE = "backup_sst_complete"


@dataclass(frozen=True)
class BackupSettings:
    """What the backup method reads from the option files."""

    flush_timeout: float
    tmpdir: str = ""  # the run directory goes to the system's


def load_settings(req: Request) -> BackupSettings:
    """[sst] sst-flush-timeout; raises ConfigError."""
    opts = read_options(req, (MYSQLD, "sst"))
    errors: list[str] = []
    timeout = option_seconds(opts, "sst-flush-timeout", "backup", errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return BackupSettings(timeout)


def donor(run: Run, s: BackupSettings) -> None:
    """Donor only: `flush tables`, wait, `continue`, write the state file, `done`."""
    req, out = run.req, run.out
    magic = os.path.join(req.datadir, MAGIC_FILE)
    if os.path.exists(magic):
        os.unlink(magic)
    if req.bypass:
        state = f"{req.gtid} {req.gtid_domain_id}".strip()
    else:
        state = flush_tables(run, s.flush_timeout)
        log.info("Tables flushed")
    replace_file(magic, (state + "\n").encode("utf-8"), None)  # never through a symlink
    out.resume()
    out.done(state)
