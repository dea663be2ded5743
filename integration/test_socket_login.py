"""No password where the server needs none (issue 17): a donor without wsrep_sst_auth logs
in to its own server as its OS user through unix_socket, and `galera-sst check` says so."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from testsupport import lab as labmod
from testsupport.cluster import assert_clean, galera_sst, sst_errors
from testsupport.lab import Lab, Node

pytestmark = pytest.mark.cluster


@pytest.fixture
def socket_account(donor: Node) -> Iterator[None]:
    """What Debian's install creates: the server's OS user via unix_socket (the lab's
    template has only root), and a donor whose wsrep_sst_auth is empty."""
    donor.sql(
        "CREATE USER IF NOT EXISTS 'mysql'@'localhost' IDENTIFIED VIA unix_socket; "
        "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'mysql'@'localhost'"
    )
    donor.sql("SET GLOBAL wsrep_sst_auth = NULL")
    try:
        yield
    finally:
        auth = f"sst:{labmod.SST_PASSWORD}".replace("\\", "\\\\").replace("'", "''")
        donor.sql(f"SET GLOBAL wsrep_sst_auth = '{auth}'")
        donor.sql("DROP USER IF EXISTS 'mysql'@'localhost'")


def test_mariabackup_donor_without_auth_uses_unix_socket(
    lab: Lab, donor: Node, socket_account: None
) -> None:
    joiner = lab.add_node(sst_method="py_mariabackup")
    donor.sst_method = "py_mariabackup"
    donor.sst_options = {}
    at = len(donor.log_text())
    lab.join(joiner)
    donor.wait_synced(60)
    text = donor.log_text()[at:]
    assert "Logging in to the local server as OS user 'mysql' through unix_socket" in text
    assert sst_errors(donor, at) == [] and sst_errors(joiner) == []
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    assert_clean(lab, joiner)
    lab.remove_node(joiner)


def test_check_names_the_socket_login(donor: Node, socket_account: None, tmp_path: object) -> None:
    cnf = os.path.join(str(tmp_path), "no-auth.cnf")
    with open(donor.cnf, encoding="utf-8") as f:
        text = "".join(ln for ln in f if not ln.startswith("wsrep_sst_auth"))
    with open(cnf, "w", encoding="utf-8") as f:
        f.write(text)
    res = galera_sst("check", "--method", "py_mariabackup", "--defaults-file", cnf, "--json")
    rows = {r["check"]: r for r in json.loads(res.stdout)}
    row = rows["SST login"]
    assert row["level"] == "pass", row
    assert "OS user 'mysql' through unix_socket" in row["detail"]
    assert "it can log in" in row["detail"]
