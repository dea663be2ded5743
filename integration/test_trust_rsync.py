"""A third party with a certificate from the cluster's own CA (CN=mallory) on the joiner's
rsync port during a real, rate-limited join (docs/tls.md 2, rsync daemon): through stunnel it gets
past TLS, and then can name, list and read nothing, and push nothing into the datadir."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sst.config import TLSFiles
from sst.methods.rsync import find_stunnel
from sst.tools import rsync as rs
from sst.tools import stunnel as st
from testsupport import lab as labmod
from testsupport.cluster import assert_clean, sst_errors, sst_port_open, wait_for
from testsupport.lab import CertPaths, Lab, Node

MALLORY = "mallory"
FORGED = b"mallory's forged global_priv, accepted as the joiner's privilege table\n"
# Every module name a party that did not see the joiner's `ready` address can think of.
GUESSED = (rs.DEFAULT_MODULE, *(f"{rs.DEFAULT_MODULE}-{sub}" for sub in rs.SUBMODULES))


@pytest.fixture(scope="module")
def ca_certs(lab: Lab) -> CertPaths:
    """One CA for every node name and for mallory (127.0.0.250), from the lab's factory."""
    nodes = {f"node{i}": f"127.0.0.{i}" for i in range(1, labmod.MAX_NODES + 1)}
    return labmod.make_certs(
        os.path.join(lab.base, "trust-certs"), {**nodes, MALLORY: "127.0.0.250"}
    )


@pytest.fixture
def mallory(lab: Lab) -> Iterator[Path]:
    """Mallory's working directory (under the lab, so that leftovers() sees her processes),
    with the forged privilege table to push."""
    d = Path(lab.base) / "mallory"
    (d / "src" / "mysql").mkdir(parents=True)
    (d / "src" / "mysql" / "global_priv.MAD").write_bytes(FORGED)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def mallory_rsync(
    d: Path, certs: CertPaths, joiner: Node, *args: str
) -> subprocess.CompletedProcess[str]:
    """rsync through stunnel with mallory's certificate, verifying the joiner's chain."""
    cert, key = certs.certs[MALLORY]
    conf = d / "stunnel.conf"
    conf.write_text(
        st.client_conf(
            TLSFiles(ca=certs.ca, cert=cert, key=key),
            st.Verify(chain=True),
            f"{joiner.ip}:{joiner.ports['sst']}",
        )
    )
    rsh = rs.rsh_stunnel(find_stunnel(), str(conf))
    return subprocess.run(
        ["rsync", f"--rsh={rsh}", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def attack(d: Path, certs: CertPaths, joiner: Node) -> None:
    """Push the forged table into every module mallory can name, list the modules, read
    one: everything is refused by the rsync daemon (TLS let her in)."""
    url = f"rsync://{joiner.ip}:{joiner.ports['sst']}"
    for module in GUESSED:
        pushed = mallory_rsync(d, certs, joiner, "-r", f"{d / 'src'}/", f"{url}/{module}/")
        assert pushed.returncode == 5, pushed.stderr
        assert f"Unknown module '{module}'" in pushed.stderr
    listing = mallory_rsync(d, certs, joiner, f"{url}/")
    assert listing.stdout.strip() == "", listing.stdout
    assert rs.DEFAULT_MODULE not in listing.stderr
    out = d / "read"
    read = mallory_rsync(d, certs, joiner, "-r", f"{url}/{rs.DEFAULT_MODULE}/", f"{out}/")
    assert read.returncode == 5 and f"Unknown module '{rs.DEFAULT_MODULE}'" in read.stderr
    assert not out.exists() or not any(out.iterdir())


def nothing_of_mallorys(joiner: Node) -> None:
    """No file of the joiner's datadir holds the forged bytes; no account named mallory."""
    for root, _, files in os.walk(joiner.datadir):
        for f in files:
            p = os.path.join(root, f)
            if os.path.isfile(p) and os.path.getsize(p) < 64 << 20:
                assert FORGED not in Path(p).read_bytes(), p
    assert joiner.sql("SELECT COUNT(*) FROM mysql.global_priv WHERE User='mallory'").strip() == "0"


@pytest.mark.parametrize(
    ("method", "mode"),
    [
        ("py_rsync", "VERIFY_CA"),
        ("py_rsync", "VERIFY_IDENTITY"),
        ("py_rsync_wan", "VERIFY_CA"),
        ("rsync", "VERIFY_CA"),  # ours under the stock name, fed by the stock donor
    ],
)
def test_mallory_with_a_cluster_certificate_gets_nothing_in_or_out(
    lab: Lab, donor: Node, ca_certs: CertPaths, mallory: Path, method: str, mode: str
) -> None:
    joiner = lab.add_node(sst_method=method)
    stock_donor = not method.startswith("py_")
    if stock_donor:
        lab.use_ours_under_stock_names(joiner)
    donor.sst_method = method
    donor.sst_options = {**labmod.tls_options(ca_certs, donor.name, mode), "rlimit": "3m"}
    joiner.sst_options = labmod.tls_options(ca_certs, joiner.name, mode)
    donor_log_at = len(donor.log_text())
    lab.configure()
    joiner.start()
    wait_for(lambda: sst_port_open(joiner), 60, "the joiner's rsync listener")
    attack(mallory, ca_certs, joiner)
    assert sst_port_open(joiner), "the SST ended before mallory was done: not a real test"
    joiner.wait_synced()
    donor.wait_synced(60)
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    assert sst_errors(joiner) == []
    nothing_of_mallorys(joiner)
    assert "Swapped " in joiner.log_text()  # our joiner received
    stock_line = "Transfer of InnoDB data files done" in donor.log_text()[donor_log_at:]
    assert stock_line == stock_donor
    assert_clean(lab, joiner)
    assert_clean(lab, donor)
    lab.remove_node(joiner)
