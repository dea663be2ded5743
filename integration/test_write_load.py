"""rsync joins while an application writes into the donor (issue 16): the donor copies the
datadir before FLUSH TABLES WITH READ LOCK and only what changed since under it
(docs/contract.md 6.2, "Pre-copy"). The joiner catches up on the writes made during the
SST once Synced, and then holds exactly the donor's data, the writer's rows included; the
writer never got an error. Ours to ours, and our donor (under the stock name) feeding a
stock joiner, which writes every session into its live datadir.

The writer's stall figures are printed for information only: speed targets live in the
benchmark (scripts/benchmark.py)."""

from __future__ import annotations

import re

from testsupport import lab as labmod
from testsupport.cluster import STOCK_ONLY, assert_clean, restart_alone, sst_errors, wait_for
from testsupport.lab import Lab, Node
from testsupport.writer import DATABASE, TABLE, Target, Writer, create_table

LOCK_LINE = re.compile(
    r"Read lock held ([0-9.]+) s: sent again under it (\d+) changed file\(s\), ([0-9.]+) MiB; "
    r"pre-copy without it ([0-9.]+) s"
)


def rows(node: Node) -> int:
    return int(node.sql(f"SELECT COUNT(*) FROM {DATABASE}.{TABLE}").strip())


def join_under_load(lab: Lab, donor: Node, joiner: Node, run: str) -> str:
    """Join joiner from donor while a writer commits into donor every 20 ms; then wait for
    the joiner to hold every row, compare the data, and return the donor's SST log."""
    create_table(donor.sql)
    log_at = len(donor.log_text())
    before = rows(donor)
    with Writer(Target(socket=donor.socket), run=run, interval=0.02, seconds=300) as writer:
        seconds = lab.join(joiner)
        donor.wait_synced(60)
    stats = writer.stats
    assert stats.errors == [], stats.errors[:5]
    assert stats.committed > 0
    wait_for(lambda: rows(joiner) == rows(donor), 60, "the joiner to apply the writer's rows")
    assert rows(joiner) == before + stats.committed
    a, b = labmod.checksums(donor), labmod.checksums(joiner)
    assert f"{DATABASE}.{TABLE}" in a
    assert a == b
    assert sst_errors(joiner) == [] and sst_errors(donor, log_at) == []
    text = donor.log_text()[log_at:]
    lock = LOCK_LINE.search(text)
    assert lock, "the donor did not pre-copy"
    print(
        f"\n[{run}] join {seconds:.1f} s; read lock {lock.group(1)} s, {lock.group(2)} "
        f"file(s) / {lock.group(3)} MiB sent under it, pre-copy {lock.group(4)} s; writer: "
        f"{stats.committed} commits, longest {stats.longest:.3f} s, blocked "
        f"{stats.blocked_seconds():.3f} s"
    )
    assert_clean(lab, joiner)
    assert_clean(lab, donor)
    return text


def test_py_rsync_join_under_write_load(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    text = join_under_load(lab, donor, joiner, "py_rsync")
    assert "Swapped " in joiner.log_text()  # our joiner received it
    assert "py_rsync SST completed on donor" in text
    lab.remove_node(joiner)


def test_stock_joiner_fed_by_our_donor_under_write_load(lab: Lab, donor: Node) -> None:
    """The shared donor restarted with ours under the stock names (the fixture restores
    it); the joiner runs the stock wsrep_sst_rsync, whose daemon writes in place."""
    lab.use_ours_under_stock_names(donor)
    donor.sst_method = "rsync"
    donor.sst_options = {}
    restart_alone(lab, donor)
    joiner = lab.add_node(sst_method="rsync")
    text = join_under_load(lab, donor, joiner, "stock-joiner")
    assert "rsync SST completed on donor" in text
    assert STOCK_ONLY[("rsync", "joiner")] in joiner.log_text()  # the stock joiner ran
    assert STOCK_ONLY[("rsync", "donor")] not in text  # and our donor
    lab.remove_node(joiner)
