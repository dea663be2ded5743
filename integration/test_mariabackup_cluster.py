"""Real joins through py_mariabackup: every TLS mode, compression, IST, and a failed
prepare or move-back that leaves the joiner's old datadir in place."""

from __future__ import annotations

import os

import pytest

from testsupport import lab as labmod
from testsupport.cluster import assert_clean, join, snapshot, sst_errors, starts_standalone
from testsupport.lab import CertPaths, Lab, Node


def use(
    donor: Node, joiner: Node, sst: dict[str, str], donor_sst: dict[str, str] | None = None
) -> None:
    donor.sst_method = joiner.sst_method = "py_mariabackup"
    joiner.sst_options = dict(sst)
    donor.sst_options = dict(donor_sst if donor_sst is not None else sst)


def test_mariabackup_zstd_then_ist(lab: Lab, donor: Node, certs: CertPaths) -> None:
    joiner = lab.add_node(sst_method="py_mariabackup")
    sst = {
        **labmod.tls_options(certs, joiner.name, "VERIFY_CA"),
        "compressor": "zstd -1 -T2",
        "decompressor": "zstd -d",
    }
    dsst = {
        **labmod.tls_options(certs, donor.name, "VERIFY_CA"),
        "compressor": "zstd -1 -T2",
        "decompressor": "zstd -d",
    }
    use(donor, joiner, sst, dsst)
    join(lab, donor, joiner)
    joiner.stop()
    donor.sql("INSERT INTO lab.t1 VALUES (900002, 'ist', 2, 'y', NOW())")
    lab.join(joiner)
    donor.wait_synced(60)
    assert "IST requested by the donor" in joiner.log_text()
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    assert sst_errors(joiner) == []
    assert_clean(lab, joiner)
    lab.remove_node(joiner)


def force_sst(node: Node) -> None:
    """Make a stopped node ask for a full SST next time (as after an unclean shutdown)."""
    path = os.path.join(node.datadir, "grastate.dat")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = ["seqno:   -1" if ln.startswith("seqno:") else ln for ln in text.splitlines()]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("phase", ["prepare", "move"])
def test_failed_prepare_or_move_keeps_old_datadir(lab: Lab, donor: Node, phase: str) -> None:
    joiner = lab.add_node(sst_method="py_rsync")
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    join(lab, donor, joiner)  # the joiner now has real data of its own
    joiner.stop()
    force_sst(joiner)
    before = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}
    bad = "inno-apply-opts" if phase == "prepare" else "inno-move-opts"
    use(donor, joiner, {bad: "--no-such-option-for-the-test"}, {})
    lab.configure()
    joiner.start()
    assert joiner.wait_exit(180) not in (None, 0)
    errors = sst_errors(joiner)
    assert len(errors) == 1
    assert f"mariadb-backup --{'prepare' if phase == 'prepare' else 'move-back'}" in errors[0]
    after = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}
    assert after == before
    assert_clean(lab, joiner)
    assert starts_standalone(joiner) == "c4ca4238a0b923820dcc509a6f75849b"  # MD5(1)
    lab.remove_node(joiner)


def test_credentials_from_sst_group_when_env_is_empty(lab: Lab, donor: Node) -> None:
    """mariadbd passes an empty WSREP_SST_OPT_AUTH when wsrep_sst_auth is unset: the donor
    then takes `[sst] wsrep-sst-auth` (docs/contract.md 1.9)."""
    joiner = lab.add_node(sst_method="py_mariabackup")
    use(donor, joiner, {}, {"wsrep-sst-auth": f"sst:{labmod.SST_PASSWORD}"})
    donor.sql("SET GLOBAL wsrep_sst_auth=''")
    try:
        join(lab, donor, joiner)
        # Without the fallback mariadb-backup would log in as the OS user via unix_socket.
        with open(os.path.join(donor.datadir, "mariabackup.backup.log"), encoding="utf-8") as f:
            assert "user: sst, password: set" in f.read()
    finally:
        donor.sql(
            f"SET GLOBAL wsrep_sst_auth='sst:{labmod.SST_PASSWORD.replace(chr(39), 2 * chr(39))}'"
        )
    lab.remove_node(joiner)
