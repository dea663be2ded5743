"""The backup method: FLUSH TABLES WITH READ LOCK held while nothing moves (docs/contract.md 3.5
and 3.9), so that a site-specific hook can run while the donor is consistent."""

from __future__ import annotations

import os

from sst import log
from sst.config import MYSQLD, read_options, sst_seconds
from sst.errors import ConfigError
from sst.methods.common import completed, flush_tables, sst_run, started
from sst.process.pidfile import replace_file
from sst.protocol import Stdout
from sst.request import Request

MAGIC_FILE = "backup_sst_complete"


def run_method(req: Request, out: Stdout) -> None:
    """Donor only: `flush tables`, wait, `continue`, write the state file, `done`."""
    if req.role == "joiner":
        raise ConfigError("the backup method has no joiner side (it transfers nothing)")
    opts = read_options(req, (MYSQLD, "sst"))
    errors: list[str] = []
    timeout = sst_seconds(opts, "sst-flush-timeout", "600", errors)
    if errors:
        raise ConfigError("; ".join(errors))
    kind = "IST" if req.bypass else "SST"
    started(req, kind)
    with sst_run(req, out) as run:
        magic = os.path.join(req.datadir, MAGIC_FILE)
        if os.path.exists(magic):
            os.unlink(magic)
        if req.bypass:
            state = f"{req.gtid} {req.gtid_domain_id}".strip()
        else:
            state = flush_tables(run, timeout)
            log.info("Tables flushed")
        replace_file(magic, (state + "\n").encode("utf-8"), None)  # never through a symlink
        out.resume()
        out.done(state)
    completed(req, kind)
