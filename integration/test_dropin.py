"""The drop-in install on this machine: both nodes run ours under the stock method names
(mariadbd finds /usr/bin first), and uninstall restores the package's files exactly."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator

import pytest

from sst import install
from testsupport import lab as labmod
from testsupport.cluster import OURS_ONLY, join
from testsupport.lab import CertPaths, Lab, Node

MD5SUMS = "/var/lib/dpkg/info/mariadb-server.md5sums"


def package_verify() -> list[str]:
    """The package's wsrep_sst_* files in /usr/bin whose md5 differs from its md5sums list,
    plus what `dpkg --verify` says (it checks a diverted file at its diverted name)."""
    bad = []
    with open(MD5SUMS, encoding="utf-8") as f:
        for line in f:
            digest, _, rel = line.strip().partition("  ")
            if rel.startswith("usr/bin/wsrep_sst_"):
                with open("/" + rel, "rb") as g:
                    if hashlib.md5(g.read()).hexdigest() != digest:
                        bad.append(rel)
    res = subprocess.run(
        ["dpkg", "--verify", "mariadb-server"], capture_output=True, text=True, check=False
    )
    return bad + [ln for ln in res.stdout.splitlines() if "wsrep_sst" in ln]


@pytest.fixture
def dropin() -> Iterator[None]:
    env = install.Env()
    install.uninstall(env, say=lambda _: None)  # a previous crashed run, if any
    assert package_verify() == []
    install.install(env, say=lambda _: None)
    try:
        yield
    finally:
        install.uninstall(env, say=lambda _: None)


@pytest.mark.parametrize("method", ["mariabackup", "rsync"])
def test_dropin_join_then_uninstall(
    lab: Lab, donor: Node, certs: CertPaths, method: str, dropin: None
) -> None:
    joiner = lab.add_node(sst_method=method)
    joiner.sst_options = labmod.tls_options(certs, joiner.name, "VERIFY_IDENTITY")
    donor.sst_options = labmod.tls_options(certs, donor.name, "VERIFY_IDENTITY")
    donor.sst_method = method
    log_at = len(donor.log_text())
    join(lab, donor, joiner)
    assert OURS_ONLY[(method, "joiner")] in joiner.log_text()
    assert OURS_ONLY[(method, "donor")] in donor.log_text()[log_at:]
    lab.remove_node(joiner)


def test_uninstall_restores_package_files(dropin: None) -> None:
    assert package_verify() != []  # installed: dpkg sees the replaced files
    install.uninstall(install.Env(), say=lambda _: None)
    assert package_verify() == []
    install.install(install.Env(), say=lambda _: None)  # the fixture uninstalls again
