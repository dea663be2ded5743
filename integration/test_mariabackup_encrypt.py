"""encrypt=1 (stock's openssl stream encryption) on real nodes, under the stock method name
as MariaDB's galera_sst_mariabackup_encrypt_with_key-openssl configures it: ours to ours,
a stock donor to our joiner and our donor to a stock joiner, each with equal data and the
key in no argv of ours; and a wrong key, which keeps the joiner's old datadir."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from testsupport import lab as labmod
from testsupport.cluster import assert_clean, join, snapshot, sst_errors
from testsupport.lab import Lab, Node

KEY = "4FA92C5873672E20FB163A0BCB2BB4A4"
ALGO = "aes-256-ctr"


def with_key(node: Node, *, in_file: bool, key: str = KEY) -> dict[str, str]:
    """encrypt=1 [sst] options: the key in the option file, or in a 0600 key file of the
    node's user (stock passes the file to `-kfile`, the key to `-k`)."""
    opts = {"encrypt-format": "openssl", "encrypt": "1", "encrypt-algo": ALGO}
    if not in_file:
        return {**opts, "encrypt-key": key}
    path = os.path.join(node.directory, "sst.key")
    with open(path, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    labmod.chown(path, "mysql")
    return {**opts, "encrypt-key-file": path}


@pytest.fixture(scope="module")
def ours_donor(lab: Lab, donor: Node) -> Iterator[Node]:
    """A second member running our scripts under the stock names, with the same data."""
    ours = lab.add_node(sst_method="py_rsync")
    lab.use_ours_under_stock_names(ours)
    lab.join(ours)
    donor.wait_synced(60)
    yield ours
    if ours in lab.nodes:
        lab.remove_node(ours)


# (donor, joiner, which side reads its key from a file)
CELLS = [
    ("py", "py", "joiner"),  # py_mariabackup both ends: the joiner's gate, then openssl -d
    ("ours", "ours", "donor"),  # ours under the stock name
    ("stock", "ours", "joiner"),  # stock's `-k KEY`, our `-kfile`
    ("ours", "stock", "donor"),  # our `-kfile`, stock's `-k KEY`
]


@pytest.mark.parametrize(
    ("donor_impl", "joiner_impl", "filed"), CELLS, ids=[f"{d}-to-{j}" for d, j, _ in CELLS]
)
def test_encrypt1_joins(
    lab: Lab, donor: Node, ours_donor: Node, donor_impl: str, joiner_impl: str, filed: str
) -> None:
    src = ours_donor if donor_impl == "ours" else donor
    method = "py_mariabackup" if joiner_impl == "py" else "mariabackup"
    joiner = lab.add_node(sst_method=method, mysqld_options={"wsrep_sst_donor": src.galera_name})
    if joiner_impl == "ours":
        lab.use_ours_under_stock_names(joiner)
    joiner.sst_options = with_key(joiner, in_file=filed == "joiner")
    src.sst_options = with_key(src, in_file=filed == "donor")
    donor_log_at = len(src.log_text())
    join(lab, src, joiner, argv_secrets=(KEY,))
    ours = [n for n, impl in ((src, donor_impl), (joiner, joiner_impl)) if impl != "stock"]
    for node in ours:
        text = node.log_text()[donor_log_at:] if node is src else node.log_text()
        assert KEY not in text
        warnings = [ln for ln in text.splitlines() if "[WARNING] encrypt=1" in ln]
        assert len(warnings) == 1, warnings
    for node, impl in ((src, donor_impl), (joiner, joiner_impl)):
        if impl == "stock":  # the stock script did encrypt (or decrypt) with the key
            text = node.log_text()[donor_log_at:] if node is src else node.log_text()
            assert "Key based encryption enabled in my.cnf" in text
    if joiner_impl != "stock":
        assert "Listening on" in joiner.log_text()
        assert "(openssl stream encryption (encrypt=1))" in joiner.log_text()
    src.sst_options = {}
    lab.remove_node(joiner)


def test_wrong_key_keeps_the_old_datadir(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    join(lab, donor, joiner)  # the joiner now has data of its own
    joiner.stop()
    path = os.path.join(joiner.datadir, "grastate.dat")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join("seqno:   -1" if ln.startswith("seqno:") else ln for ln in lines) + "\n")
    before = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}
    donor.sst_method = joiner.sst_method = "py_mariabackup"
    joiner.sst_options = with_key(joiner, in_file=True, key="not the donor's key")
    donor.sst_options = with_key(donor, in_file=False)
    lab.configure()
    joiner.start()
    assert joiner.wait_exit(180) not in (None, 0)
    errors = sst_errors(joiner)
    assert len(errors) == 1, errors
    # openssl or mbstream fails first (the machine's timing), either way this line:
    assert re.search(
        r"the stream could not be decrypted \((openssl could not decrypt it|mbstream found "
        r"no stream in openssl's output)\): wrong encrypt-key or encrypt-algo\?",
        errors[0],
    ), errors[0]
    after = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}
    assert after == before
    assert_clean(lab, joiner)
    assert_clean(lab, donor)
    lab.remove_node(joiner)
