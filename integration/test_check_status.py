"""`galera-sst check` and `galera-sst status` against a real node's configuration."""

from __future__ import annotations

import json
import subprocess

import pytest

from sst import lab as labmod
from sst.lab import CertPaths, Lab, Node

pytestmark = pytest.mark.cluster


def galera_sst(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["galera-sst", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_check_passes_on_a_configured_donor(lab: Lab, donor: Node, certs: CertPaths) -> None:
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_IDENTITY")
    donor.write_cnf(lab.nodes)
    res = galera_sst("check", "--method", "py_mariabackup", "--defaults-file", donor.cnf, "--json")
    rows = {r["check"]: r for r in json.loads(res.stdout)}
    assert res.returncode == 0, res.stdout
    assert rows["SST credentials"]["level"] == "pass"
    assert rows["mariadb-backup matches the server"]["level"] == "pass"
    assert rows["SST certificate (joiner)"]["level"] == "pass"
    assert "TLS VERIFY_IDENTITY" in rows["py_mariabackup options (donor)"]["detail"]


def test_check_names_the_broken_file(lab: Lab, donor: Node, certs: CertPaths) -> None:
    opts = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    opts["ssl-key"] = certs.certs["node40"][1]  # another node's key
    donor.sst_options = opts
    donor.write_cnf(lab.nodes)
    res = galera_sst("check", "--method", "py_rsync", "--defaults-file", donor.cnf)
    assert res.returncode == 1
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("FAIL"))
    assert "do not match" in line and certs.certs["node40"][1] in line
    donor.sst_options = {}
    donor.write_cnf(lab.nodes)


def test_status_after_a_join(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    lab.join(joiner)
    for node, role in ((joiner, "joiner"), (donor, "donor")):
        res = galera_sst("status", "--datadir", node.datadir, "--json")
        data = json.loads(res.stdout)
        assert res.returncode == 0
        assert (data["state"], data["role"], data["method"]) == ("succeeded", role, "py_rsync")
        assert data["bytes_done"] > 0
