"""Refusals on real nodes: bad certificates stop the SST before data moves, nothing is left."""

from __future__ import annotations

import os

from sst import demo
from testsupport import lab as labmod
from testsupport.cluster import failed_join, join, sst_errors, write_pair
from testsupport.lab import CertPaths, Lab, Node


def test_joiner_cert_from_another_ca_refused(lab: Lab, donor: Node, certs: CertPaths) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    other_ca = labmod.make_ca("some other CA")
    cert, key = write_pair(lab, "foreign", labmod.make_leaf(other_ca, joiner.name, ips=[joiner.ip]))
    joiner.sst_options = {
        "ssl-mode": "VERIFY_CA",
        "ssl-ca": certs.ca,
        "ssl-cert": cert,
        "ssl-key": key,
    }
    failed_join(lab, joiner)
    errors = sst_errors(joiner)
    assert len(errors) == 1
    assert cert in errors[0] and "does not chain to the CA" in errors[0]
    assert ": 22 (Invalid argument)" in joiner.log_text()
    # Fixed configuration: the retry just works.
    joiner.sst_options = labmod.tls_options(certs, joiner.name, "VERIFY_CA")
    open(joiner.error_log, "w").close()
    join(lab, donor, joiner)
    lab.remove_node(joiner)


def test_expired_joiner_cert_refused(lab: Lab, donor: Node, certs: CertPaths) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    ca = labmod.make_ca("expiry CA")
    ca_path = os.path.join(lab.base, "certs", "expiry-ca.pem")
    demo.write_file(ca_path, labmod.pem_cert(ca[0]))
    cert, key = write_pair(
        lab,
        "expired",
        labmod.make_leaf(ca, joiner.name, ips=[joiner.ip], not_before_days=-30, days=-1),
    )
    joiner.sst_options = {
        "ssl-mode": "REQUIRED",
        "ssl-ca": ca_path,
        "ssl-cert": cert,
        "ssl-key": key,
    }
    failed_join(lab, joiner)
    errors = sst_errors(joiner)
    assert len(errors) == 1 and "expired on" in errors[0] and cert in errors[0]
    lab.remove_node(joiner)


def test_donor_key_mismatch_refused_joiner_keeps_data(
    lab: Lab, donor: Node, certs: CertPaths
) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    cert, _ = certs.certs[donor.name]
    _, wrong_key = certs.certs["node254"]
    donor.sst_options = {
        "ssl-mode": "VERIFY_CA",
        "ssl-ca": certs.ca,
        "ssl-cert": cert,
        "ssl-key": wrong_key,
    }
    joiner.sst_options = labmod.tls_options(certs, joiner.name, "VERIFY_CA")
    donor_log_size = os.path.getsize(donor.error_log)
    failed_join(lab, joiner)
    with open(donor.error_log, encoding="utf-8", errors="replace") as f:
        f.seek(donor_log_size)
        donor_new = f.read()
    donor_errors = [ln for ln in donor_new.splitlines() if "WSREP_SST: [ERROR]" in ln]
    assert len(donor_errors) == 1
    assert "do not match" in donor_errors[0] and wrong_key in donor_errors[0]
    # The joiner learns of the failure from Galera and its script gives up cleanly.
    assert any("terminated unexpectedly" in e or "parent" in e for e in sst_errors(joiner))
    donor.wait_synced(60)
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_CA")
    lab.remove_node(joiner)
