"""Real joins through py_rsync / py_rsync_wan between mariadbd processes on this machine."""

from __future__ import annotations

import os
import time

from integration.conftest import leftovers, sst_port_open
from integration.leaks import watching
from sst import datadir
from testsupport import lab as labmod
from testsupport.lab import CertPaths, Lab, Node


def sst_errors(node: Node, since: int = 0) -> list[str]:
    """The WSREP_SST ERROR lines in a node's log (from character `since` on)."""
    return [ln for ln in node.log_text()[since:].splitlines() if "WSREP_SST: [ERROR]" in ln]


def assert_clean(lab: Lab, node: Node) -> None:
    """No SST process left, no listener on the SST port, no marker or staging left."""
    deadline = time.monotonic() + 10
    while leftovers(lab.base) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(lab.base) == []
    assert not sst_port_open(node)
    names = set(os.listdir(node.datadir))
    for debris in datadir.TRANSIENT:
        assert debris not in names, f"{debris} left in {node.datadir}"


def set_tls(donor: Node, joiner: Node, certs: CertPaths, mode: str) -> None:
    """Give both nodes the [sst] TLS options for mode (the donor re-reads them per SST)."""
    donor.sst_options = labmod.tls_options(certs, donor.name, mode)
    joiner.sst_options = labmod.tls_options(certs, joiner.name, mode)


def join(lab: Lab, donor: Node, joiner: Node, *, expect_ours: bool = True) -> None:
    """Join, then assert equal checksums, no SST error, no debris on either side, and no
    secret in any argv, child environment or log while our scripts ran (expect_ours: at
    least one of them did; False only for stock-to-stock)."""
    donor_log_at = len(donor.log_text())
    with watching(labmod.SST_PASSWORD) as watch:
        lab.join(joiner)
        donor.wait_synced(60)
    watch.scan_text("the joiner's error log", joiner.log_text())
    watch.scan_text("the donor's error log", donor.log_text()[donor_log_at:])
    for node in (donor, joiner):  # what the SST left behind (its tmpdir is in there)
        watch.scan_files(node.directory, skip=(node.cnf, node.error_log))
    if expect_ours:
        assert watch.scripts_seen >= 1, "none of our SST scripts was seen running"
    assert watch.hits == []
    a, b = labmod.checksums(donor), labmod.checksums(joiner)
    assert len(a) >= 6
    assert a == b
    assert sst_errors(joiner) == []
    assert_clean(lab, joiner)
    assert_clean(lab, donor)


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
