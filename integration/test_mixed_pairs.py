"""Wire compatibility during a node-by-node rollout: our donor with a stock joiner and a stock
donor with our joiner, for mariabackup and rsync, plain and with TLS (issue 5 extends this
to the whole matrix)."""

from __future__ import annotations

import pytest

from integration.test_rsync_cluster import join
from sst import lab as labmod
from sst.lab import CertPaths, Lab, Node

pytestmark = pytest.mark.cluster

# Log lines only one implementation writes, per method and role.
OURS_ONLY = {
    ("mariabackup", "joiner"): "Moved the prepared backup into",
    ("mariabackup", "donor"): "Streaming the backup to the joiner at",
    ("rsync", "joiner"): "Swapped ",
    ("rsync", "donor"): "database directories)",
}
STOCK_ONLY = {
    ("mariabackup", "joiner"): "Waiting for SST streaming to complete!",
    ("mariabackup", "donor"): "Sleeping before data transfer for SST",
    ("rsync", "joiner"): "Joiner cleanup done.",
    ("rsync", "donor"): "Transfer of InnoDB data files done",
}


def restart_alone(lab: Lab, donor: Node) -> None:
    """Restart the only member (it re-reads PATH at start) as a new cluster."""
    donor.stop()
    lab.configure()
    donor.start(new_cluster=True)
    donor.wait_synced()


@pytest.mark.parametrize("method", ["mariabackup", "rsync"])
@pytest.mark.parametrize("mode", ["DISABLED", "VERIFY_CA"])
@pytest.mark.parametrize("ours", ["donor", "joiner"])
def test_mixed_pair(
    lab: Lab, donor: Node, certs: CertPaths, method: str, mode: str, ours: str
) -> None:
    joiner = lab.add_node(sst_method=method)
    joiner.sst_options = labmod.tls_options(certs, joiner.name, mode)
    donor.sst_options = labmod.tls_options(certs, donor.name, mode)
    donor.sst_method = method
    saved = (donor.path_prefix, dict(donor.mysqld_options))
    if ours == "joiner":
        lab.use_ours_under_stock_names(joiner)
    else:
        lab.use_ours_under_stock_names(donor)
        restart_alone(lab, donor)
    donor_log = len(donor.log_text())
    try:
        join(lab, donor, joiner)
        donor_text = donor.log_text()[donor_log:]
        texts = {"donor": donor_text, "joiner": joiner.log_text()}
        stock = "joiner" if ours == "donor" else "donor"
        assert OURS_ONLY[(method, ours)] in texts[ours]
        assert STOCK_ONLY[(method, stock)] in texts[stock]
        assert STOCK_ONLY[(method, ours)] not in texts[ours]
    finally:
        lab.remove_node(joiner)
        if ours == "donor":
            donor.path_prefix, donor.mysqld_options = saved
            restart_alone(lab, donor)
