"""`galera-sst check` and `galera-sst status` against a real node's configuration."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from integration.conftest import leftovers
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
        assert data["phase"] == "done" and data["exit_code"] == 0
    joiner_state = json.loads(galera_sst("status", "--datadir", joiner.datadir, "--json").stdout)
    assert joiner_state["bytes_done"] > 0  # the daemon lived through the whole transfer


def test_manual_joiner_and_donor(lab: Lab, donor: Node, certs: CertPaths) -> None:
    """Try certificates and the network path without touching a node: a manual joiner
    receives the running donor's state into an empty directory, over VERIFY_IDENTITY."""
    target = os.path.join(lab.base, "manual-target")
    cnf = os.path.join(lab.base, "manual-joiner.cnf")
    with open(cnf, "w", encoding="utf-8") as f:
        f.write(
            "[sst]\n"
            + "".join(
                f"{k}={v}\n"
                for k, v in labmod.tls_options(certs, "node9", "VERIFY_IDENTITY").items()
            )
        )
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_IDENTITY")
    donor.write_cnf(lab.nodes)
    port = labmod.free_port_block("127.0.0.9", 1)
    j = subprocess.Popen(
        [
            "galera-sst",
            "joiner",
            "--address",
            f"127.0.0.9:{port}",
            "--datadir",
            target,
            "--defaults-file",
            cnf,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert j.stdout is not None
    first = j.stdout.readline()
    assert first.startswith("ready: on the donor, run")
    address = j.stdout.readline().split("--address '")[1].split("'")[0]
    assert address.startswith("node9:") and f"@127.0.0.9:{port}/" in address
    env = {**os.environ, "WSREP_SST_OPT_AUTH": f"sst:{labmod.SST_PASSWORD}"}
    d = subprocess.run(
        [
            "galera-sst",
            "donor",
            "--address",
            address,
            "--datadir",
            donor.datadir,
            "--socket",
            donor.socket,
            "--defaults-file",
            donor.cnf,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert d.returncode == 0, d.stdout + d.stderr
    assert "done: the joiner has the state" in d.stdout
    rest = j.stdout.read()
    assert j.wait(60) == 0, rest + (j.stderr.read() if j.stderr else "")
    assert f"into {target}" in rest
    assert os.path.isdir(os.path.join(target, "lab")) and os.path.exists(
        os.path.join(target, "ibdata1")
    )
    assert leftovers(lab.base) == []
    # Never into a live datadir.
    res = galera_sst("joiner", "--address", "127.0.0.9:1", "--datadir", donor.datadir)
    assert res.returncode == 22 and "is not empty" in res.stderr
    donor.sst_options = {}
    donor.write_cnf(lab.nodes)
