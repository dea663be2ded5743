"""The harness's own promises on real nodes: a test that changes or stops the shared donor
does not leave it so for the next one, and `galera-sst demo` runs a real SST per method with
an SST account that has only what SST needs."""

from __future__ import annotations

import re
import subprocess

import pytest

from integration.conftest import NodeConfig, restore_shared_node
from testsupport.lab import Lab, Node


def test_a_changed_and_stopped_donor_is_restored(lab: Lab, donor: Node) -> None:
    before = NodeConfig.of(donor)
    assert before.pid is not None
    donor.sst_options["sst-idle-timeout"] = "1"
    donor.mysqld_options["max_connections"] = "17"
    donor.path_prefix = "/nonexistent"
    donor.stop()
    restore_shared_node(lab, donor, before)
    after = NodeConfig.of(donor)
    assert after.pid is not None and after.pid != before.pid  # restarted
    assert (after.sst_options, after.mysqld_options, after.path_prefix) == (
        before.sst_options,
        before.mysqld_options,
        before.path_prefix,
    )
    assert donor.sql("SELECT @@max_connections").strip() != "17"
    with open(donor.cnf, encoding="utf-8") as f:
        assert "sst-idle-timeout" not in f.read()
    assert donor.status("wsrep_local_state_comment") == "Synced"


def test_an_untouched_donor_is_not_restarted(lab: Lab, donor: Node) -> None:
    before = NodeConfig.of(donor)
    restore_shared_node(lab, donor, before)
    assert NodeConfig.of(donor).pid == before.pid


@pytest.mark.parametrize("method", ["py_rsync", "py_rsync_wan", "py_mariabackup"])
def test_demo_runs_a_real_sst(method: str) -> None:
    """The product command, as README's first command runs it (setup.sh aside)."""
    res = subprocess.run(
        ["galera-sst", "demo", "--method", method, "--rows", "500"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    line = re.search(
        r"^\[demo\] method=(\S+) tls=(\S+) .*data_equal=(\S+) sst_errors=(\d+)$", res.stdout, re.M
    )
    assert line is not None, res.stdout
    assert line.groups() == (method, "VERIFY_IDENTITY", "yes", "0")
