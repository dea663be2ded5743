"""mysqldump joins with verified client TLS, the donor's GTID state on the joiner, and the
backup method's FTWRL handshake."""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator

import pytest

from sst import demo
from testsupport import lab as labmod
from testsupport.cluster import assert_clean, join, restart_alone, sst_errors
from testsupport.lab import CertPaths, Lab, LabError, Node
from testsupport.process import Script, start_script


@pytest.fixture(scope="module")
def ours(lab: Lab, donor: Node) -> Iterator[Node]:
    """The shared donor, restarted to run our scripts under the stock names (mariadbd runs
    mysqldump only by that name), and restored afterwards."""
    saved = (donor.path_prefix, dict(donor.mysqld_options))
    lab.use_ours_under_stock_names(donor)
    restart_alone(lab, donor)
    yield donor
    donor.path_prefix, donor.mysqld_options = saved
    restart_alone(lab, donor)


def server_tls(certs: CertPaths, node: Node) -> dict[str, str]:
    cert, key = certs.certs[node.name]
    return {"ssl_cert": cert, "ssl_key": key, "ssl_ca": certs.ca}


def mysqldump_joiner(lab: Lab, certs: CertPaths) -> Node:
    joiner = lab.add_node(sst_method="mysqldump")
    joiner.mysqld_options = {**server_tls(certs, joiner), "log-bin": "joiner-bin"}
    lab.create_sst_user_offline(joiner)
    return joiner


def test_mysqldump_verified_tls_and_donor_gtid_state(
    lab: Lab, ours: Node, certs: CertPaths
) -> None:
    donor = ours
    donor.sql("INSERT INTO lab.t2 VALUES (900003, 'gtid', 3, 'z', NOW())")
    state = donor.sql("SELECT @@GLOBAL.gtid_binlog_state").strip()
    assert state, "the shared donor writes binlogs, so it has a GTID state"
    joiner = mysqldump_joiner(lab, certs)
    donor.sst_method = "mysqldump"
    donor.sst_options = {"ssl-mode": "VERIFY_IDENTITY", "ssl-ca": certs.ca}
    log_at = len(donor.log_text())
    join(lab, donor, joiner)
    text = donor.log_text()[log_at:]
    assert "Connecting to the joiner with TLS, verifying the server certificate and name" in text
    assert "mysqldump SST completed on donor" in text
    # The stock script would write the joiner's own (empty) state back; ours copies the donor's.
    assert joiner.sql("SELECT @@GLOBAL.gtid_binlog_state").strip() == state
    lab.remove_node(joiner)


def test_mysqldump_refuses_a_server_certificate_it_cannot_verify(
    lab: Lab, ours: Node, certs: CertPaths
) -> None:
    donor = ours
    joiner = mysqldump_joiner(lab, certs)
    other = labmod.make_certs(os.path.join(lab.base, "other-ca"), {"x": "127.0.0.1"})
    donor.sst_method = "mysqldump"
    donor.sst_options = {"ssl-mode": "VERIFY_CA", "ssl-ca": other.ca}
    log_at = len(donor.log_text())
    lab.configure()
    joiner.start()
    assert joiner.wait_exit(180) not in (None, 0), "the joiner must fail visibly"
    errors = sst_errors(donor, log_at)
    assert errors and all("connecting to the joiner" in e for e in errors)
    assert any("certificate" in e.lower() or "ssl" in e.lower() for e in errors)
    donor.wait_synced(60)
    assert_clean(lab, donor)
    lab.remove_node(joiner)


def test_mysqldump_checks_the_name_it_dials(lab: Lab, ours: Node) -> None:
    """IP versus DNS SAN: the donor dials the joiner's server at 127.0.0.N; a server
    certificate from the right CA that names only the host name (CN and DNS SAN) is refused
    under VERIFY_IDENTITY by the donor, the side that knows which address it dialled."""
    donor = ours
    d = os.path.join(lab.base, "dns-only")
    os.makedirs(d)
    ca = labmod.make_ca("dns-only CA")
    ca_path = os.path.join(d, "ca.pem")
    demo.write_file(ca_path, labmod.pem_cert(ca[0]))
    joiner = lab.add_node(sst_method="mysqldump")
    cert, key = labmod.make_leaf(ca, joiner.name, dns=[joiner.name])
    cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    demo.write_file(cert_path, labmod.pem_cert(cert))
    demo.write_file(key_path, labmod.pem_key(key), 0o600)
    labmod.chown(key_path, "mysql")
    joiner.mysqld_options = {"ssl_cert": cert_path, "ssl_key": key_path, "ssl_ca": ca_path}
    lab.create_sst_user_offline(joiner)
    donor.sst_method = "mysqldump"
    donor.sst_options = {"ssl-mode": "VERIFY_IDENTITY", "ssl-ca": ca_path}
    log_at = len(donor.log_text())
    lab.configure()
    joiner.start()
    assert joiner.wait_exit(180) not in (None, 0), "the joiner must fail visibly"
    errors = sst_errors(donor, log_at)
    assert errors and all("connecting to the joiner" in e for e in errors), errors
    # The chain is good (the right CA): what fails is the name, 127.0.0.N not in the SAN.
    assert all("server certificate" in e.lower() for e in errors), errors
    donor.wait_synced(60)
    assert_clean(lab, donor)
    lab.remove_node(joiner)


def _no_line_within(script: Script, seconds: float) -> bool:
    """True when the script printed nothing on stdout for that long."""
    assert script.proc.stdout is not None
    ready, _, _ = select.select([script.proc.stdout], [], [], seconds)
    return not ready


def test_backup_method_holds_ftwrl_and_writes_the_state(lab: Lab, donor: Node) -> None:
    """`backup` transfers nothing: run it as mariadbd would for a donor (via garbd). Playing
    mariadbd, take FLUSH TABLES WITH READ LOCK on the real donor server: while the lock is
    held writes are refused and the script waits for tables_flushed; it then says
    `continue`, writes the state the server flushed at, and the lock can be released."""
    donor.sst_options = {}
    uuid = donor.status("wsrep_cluster_state_uuid")
    s = start_script(
        "py_backup",
        [
            "--role",
            "donor",
            "--address",
            "127.0.0.250:4444",
            "--datadir",
            donor.datadir,
            "--defaults-file",
            donor.cnf,
            "--gtid",
            f"{uuid}:5",
            "--gtid-domain-id",
            "0",
        ],
    )
    assert s.readline() == "flush tables"
    session = subprocess.Popen(
        ("mariadb", "--no-defaults", "--unbuffered", "-uroot", f"-S{donor.socket}", "-N", "-B"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert session.stdin is not None and session.stdout is not None
    try:
        session.stdin.write("FLUSH TABLES WITH READ LOCK;\nSELECT 'locked';\n")
        session.stdin.flush()
        ready, _, _ = select.select([session.stdout], [], [], 30)
        assert ready and session.stdout.readline().strip() == "locked"
        with pytest.raises(LabError, match=r"Lock wait timeout|paused on node for FTWRL"):
            donor.sql("SET SESSION lock_wait_timeout=1; CREATE DATABASE ftwrl_probe")
        assert _no_line_within(s, 1.5), "continue before the server flushed"
        state = f"{uuid}:{donor.status('wsrep_last_committed')} 0"
        path = os.path.join(donor.datadir, "tables_flushed")
        with open(path, "w", encoding="utf-8") as f:
            f.write(state + "\n")
        assert s.readline() == "continue"
        assert s.readline() == f"done {state}"
        assert s.wait() == 0
    finally:
        session.stdin.write("UNLOCK TABLES;\n")
        session.stdin.close()
        session.wait(timeout=30)
    donor.sql("CREATE DATABASE ftwrl_probe; DROP DATABASE ftwrl_probe")  # writable again
    with open(os.path.join(donor.datadir, "backup_sst_complete"), encoding="utf-8") as f:
        assert f.read() == state + "\n"
    os.unlink(os.path.join(donor.datadir, "backup_sst_complete"))
    assert not os.path.exists(path)
