"""A py_mariabackup join while an application writes into the donor (issue 16): the donor
keeps taking writes, says how long its backup locks blocked them, and the joiner catches
up to the same data, the writer's rows included."""

from __future__ import annotations

import re
import time

from testsupport import lab as labmod
from testsupport import writer as wr
from testsupport.cluster import assert_clean, sst_errors
from testsupport.lab import Lab, Node

BLOCKED = re.compile(
    r"WSREP_SST: \[INFO\] Writes on this node were blocked for (\d+\.\d+) s while "
    r"mariadb-backup held its locks \(BACKUP STAGE BLOCK_DDL to END; BLOCK_COMMIT to END "
    r"(\d+\.\d+) s; its longest step \d+\.\d+ s, after '.*'\)"
)


def test_mariabackup_join_under_write_load(lab: Lab, donor: Node) -> None:
    wr.create_table(donor.sql)
    joiner = lab.add_node(sst_method="py_mariabackup")
    donor.sst_method = "py_mariabackup"
    donor.sst_options = {}
    log_at = len(donor.log_text())
    writer = wr.Writer(wr.Target(socket=donor.socket), run="mariabackup-load", seconds=300)
    writer.start()
    try:
        time.sleep(0.5)  # writing before the joiner asks for its state
        took = lab.join(joiner)
        donor.wait_synced(60)
        time.sleep(0.5)  # and a little after it is Synced
    finally:
        stats = writer.stop()

    # No write failed: the mariabackup donor never refuses writes, it only delays them.
    assert stats.errors == []
    assert stats.committed >= took * 10, (stats.committed, took)  # 50/s asked for
    # The joiner has every row the writer committed (a causal read waits until it applied
    # what the cluster committed before), and all its data equals the donor's.
    rows = joiner.sql(
        "SET SESSION wsrep_sync_wait = 1; "
        f"SELECT COUNT(*) FROM {wr.DATABASE}.{wr.TABLE} WHERE run = 'mariabackup-load'"
    )
    assert int(rows) == stats.committed
    a, b = labmod.checksums(donor), labmod.checksums(joiner)
    assert f"{wr.DATABASE}.{wr.TABLE}" in a and len(a) >= 7
    assert a == b

    # The donor said how long its backup locks blocked writes, and it was short (the
    # redo log is polled every 10 ms instead of every second while the locks are held).
    said = BLOCKED.findall(donor.log_text()[log_at:])
    assert len(said) == 1, donor.log_text()[log_at:][-3000:]
    total, commit = map(float, said[0])
    assert 0.0 < commit <= total < 1.0
    assert sst_errors(joiner) == [] and sst_errors(donor, log_at) == []
    assert_clean(lab, joiner)
    assert_clean(lab, donor)
