"""The pairing matrix of a node-by-node rollout: {stock, ours} donor x {stock, ours} joiner,
for mariabackup (plain, encrypt 2/3/4, ssl-mode REQUIRED/VERIFY_CA/VERIFY_IDENTITY) and rsync
(plain, REQUIRED, VERIFY_CA, VERIFY_IDENTITY), on real nodes under the stock method names.

Two donors sit in the cluster: the shared one runs the stock scripts, a second one runs ours
under the stock names (its own basedir, as in lab.use_ours_under_stock_names), and each joiner
picks its donor with wsrep_sst_donor, so no donor restarts between cells. Every cell must end
as the stock-to-stock cell of its mode ends (EXPECTED); the outcome of each cell is written to
$GALERA_SST_MATRIX_JSON when set, and scripts/compat_table.py renders docs/compatibility.md
from it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from testsupport import lab as labmod
from testsupport.cluster import OURS_ONLY, STOCK_ONLY, join, leftovers, legacy_pem, reap
from testsupport.lab import CertPaths, Lab, Node

MODES = {
    "mariabackup": [
        "plain",
        "encrypt=2",
        "encrypt=3",
        "encrypt=4",
        "REQUIRED",
        "VERIFY_CA",
        "VERIFY_IDENTITY",
    ],
    "rsync": ["plain", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY", "VERIFY_IDENTITY+peers"],
}
PAIRS = [("stock", "stock"), ("stock", "ours"), ("ours", "stock"), ("ours", "ours")]
CELLS = [(m, mode, d, j) for m, modes in MODES.items() for mode in modes for d, j in PAIRS]

# Modes in which a stock script refuses its peer: (method, mode) -> what stock logs. Every
# cell with a stock side must fail the same way; ours to ours joins.
# The stock rsync scripts implement VERIFY_IDENTITY with stunnel's verifyPeer, which accepts
# only a peer certificate that is itself in the CA file ("VERIFY_IDENTITY+peers" puts every
# node's certificate there, and then stock joins too).
STOCK_REFUSES: dict[tuple[str, str], str] = {
    ("rsync", "VERIFY_IDENTITY"): "CERT: Certificate not found in local repository",
}

# The stock encrypt=3 donor checks the joiner's certificate for the name "localhost" when
# the joiner's address is one of the donor's own (every 127.0.0.N here), and for the
# joiner's address otherwise (ours always checks the address). So that this one-machine lab
# tests what a real multi-host cluster does, the matrix's certificates also name localhost.


RESULTS: dict[str, dict[str, str]] = {}


def sst_options(lab: Lab, certs: CertPaths, node: Node, mode: str) -> dict[str, str]:
    """[sst] options of one node for a matrix mode."""
    if mode == "plain":
        return {}
    if mode.endswith("+peers"):
        opts = labmod.tls_options(certs, node.name, mode.removesuffix("+peers"))
        return {**opts, "ssl-ca": peers_bundle(certs)}
    if mode.startswith("encrypt="):
        n = mode.split("=")[1]
        cert, key = certs.certs[node.name]
        if n == "2":  # one PEM with the certificate and its key
            return {"encrypt": n, "tca": certs.ca, "tcert": legacy_pem(lab, certs, node.name)}
        return {"encrypt": n, "tca": certs.ca, "tcert": cert, "tkey": key}
    return labmod.tls_options(certs, node.name, mode)


def peers_bundle(certs: CertPaths) -> str:
    """The CA followed by every node certificate (what stunnel's verifyPeer needs)."""
    path = os.path.join(os.path.dirname(certs.ca), "ca-and-peers.pem")
    if not os.path.exists(path):
        with open(path, "wb") as out:
            for p in [certs.ca, *(c for c, _ in certs.certs.values())]:
                with open(p, "rb") as f:
                    out.write(f.read())
    return path


@pytest.fixture(scope="module")
def mcerts(lab: Lab) -> CertPaths:
    """The matrix's CA and node certificates (IP, node name and localhost as SANs)."""
    d = os.path.join(lab.base, "matrix-certs")
    paths = labmod.make_certs(
        d,
        {f"node{i}": f"127.0.0.{i}" for i in range(1, labmod.MAX_NODES + 1)},
        extra_dns=["localhost"],
    )
    labmod.chown(d, "mysql")
    return paths


@pytest.fixture(scope="module")
def donors(lab: Lab, donor: Node) -> Iterator[dict[str, Node]]:
    """The shared donor (stock scripts) and a second member running ours under the stock
    names; both hold the same data."""
    ours = lab.add_node(sst_method="py_rsync")
    lab.use_ours_under_stock_names(ours)
    lab.join(ours)
    donor.wait_synced(60)
    yield {"stock": donor, "ours": ours}
    if ours in lab.nodes:
        lab.remove_node(ours)
    if os.environ.get("GALERA_SST_MATRIX_JSON"):
        with open(os.environ["GALERA_SST_MATRIX_JSON"], "w", encoding="utf-8") as f:
            json.dump(RESULTS, f, indent=1)  # in CELLS order, which the table keeps


@pytest.mark.parametrize(
    ("method", "mode", "donor_impl", "joiner_impl"),
    CELLS,
    ids=[f"{m}-{mode}-{d}_donor-{j}_joiner" for m, mode, d, j in CELLS],
)
def test_pairing(
    lab: Lab,
    donors: dict[str, Node],
    mcerts: CertPaths,
    method: str,
    mode: str,
    donor_impl: str,
    joiner_impl: str,
) -> None:
    src = donors[donor_impl]
    joiner = lab.add_node(sst_method=method, mysqld_options={"wsrep_sst_donor": src.galera_name})
    if joiner_impl == "ours":
        lab.use_ours_under_stock_names(joiner)
    joiner.sst_options = sst_options(lab, mcerts, joiner, mode)
    src.sst_options = sst_options(lab, mcerts, src, mode)
    donor_log = len(src.log_text())
    cell = f"{donor_impl} donor, {joiner_impl} joiner"
    RESULTS.setdefault(f"{method} {mode}", {})[cell] = "did not finish"
    refusal = STOCK_REFUSES.get((method, mode), "")
    if refusal and "stock" in (donor_impl, joiner_impl):
        lab.configure()
        joiner.start()
        rc = joiner.wait_exit(120)
        assert rc is not None and rc != 0, "stock refuses this mode, so must this pairing"
        logs = src.log_text()[donor_log:] + joiner.log_text()
        assert refusal in logs
        lab.remove_node(joiner)
        reap(joiner.directory)
        wait_for_no_leftovers(lab)
        src.wait_synced(60)
        RESULTS[f"{method} {mode}"][cell] = f"refused, as stock to stock (`{refusal}`)"
        return
    join(lab, src, joiner, expect_ours="ours" in (donor_impl, joiner_impl))
    texts = {"donor": src.log_text()[donor_log:], "joiner": joiner.log_text()}
    for role, impl in (("donor", donor_impl), ("joiner", joiner_impl)):
        mine, other = (OURS_ONLY, STOCK_ONLY) if impl == "ours" else (STOCK_ONLY, OURS_ONLY)
        assert mine[(method, role)] in texts[role], f"the {impl} {role} script did not run"
        assert other[(method, role)] not in texts[role]
    if joiner_impl == "ours" and mode != "plain":
        tunnel = "socat" if method == "mariabackup" else "stunnel"
        assert " through " + tunnel in texts["joiner"]
    if method == "mariabackup" and "ours" == donor_impl == joiner_impl:
        assert "does not acknowledge" not in texts["donor"]  # the ack protocol was used
    RESULTS[f"{method} {mode}"][cell] = "Synced, data equal"


def wait_for_no_leftovers(lab: Lab) -> None:
    deadline = time.monotonic() + 20
    while leftovers(lab.base) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(lab.base) == []
