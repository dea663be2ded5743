"""Real joins through py_rsync / py_rsync_wan between mariadbd processes on this machine."""

from __future__ import annotations

import os

from testsupport import lab as labmod
from testsupport.cluster import assert_clean, join, set_tls
from testsupport.lab import CertPaths, Lab, Node


def test_rsync_wan_delta_join_then_ist(lab: Lab, donor: Node, certs: CertPaths) -> None:
    joiner = lab.add_node(sst_method="py_rsync_wan")
    donor.sst_method = "py_rsync_wan"
    set_tls(donor, joiner, certs, "VERIFY_IDENTITY")
    join(lab, donor, joiner)
    assert "delta mode" in joiner.log_text()
    # A short outage: the rejoin is an IST, which the script sees as a bypass.
    joiner.stop()
    donor.sql("INSERT INTO lab.t0 VALUES (900001, 'ist', 1, 'x', NOW())")
    lab.join(joiner)
    donor.wait_synced(60)
    assert "IST requested by the donor" in joiner.log_text()
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    assert_clean(lab, joiner)
    lab.remove_node(joiner)


def test_rsync_joiner_running_as_root(lab: Lab, donor: Node, certs: CertPaths) -> None:
    joiner = lab.add_node(sst_method="py_rsync", user="root")
    donor.sst_method = "py_rsync"
    set_tls(donor, joiner, certs, "VERIFY_CA")
    join(lab, donor, joiner)
    st = os.stat(os.path.join(joiner.datadir, "lab"))
    assert st.st_uid != 65534, "files must not be owned by nobody"
    lab.remove_node(joiner)


def test_rsync_binlogs_restored(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_rsync", mysqld_options={"log-bin": "donor-bin"})
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    newest = donor.sql("SHOW BINARY LOGS").split()[-2]
    join(lab, donor, joiner)
    # The donor rotates its binlog at FTWRL, so the newest file before the SST is the one
    # tarred (sst-max-binlogs=1); the joiner restores it and rebuilds its index.
    joiner_logs = joiner.sql("SHOW BINARY LOGS").split()[0::2]
    assert newest in joiner_logs or any(n > newest for n in joiner_logs)
    assert "Restored 1 binlog file(s)" in joiner.log_text()
    lab.remove_node(joiner)
