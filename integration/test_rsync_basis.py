"""Stale joiners and resumed transfers on real nodes (py_rsync): a node that was a member
rejoins past the donor's gcache and receives only what changed; a join that failed midway
resumes from what arrived; another cluster's data is never the basis."""

from __future__ import annotations

import os
import re
import stat

import psutil
import pytest

from sst import datadir, resume, status
from testsupport import lab as labmod
from testsupport.cluster import assert_clean, join, nothing_left, wait_for
from testsupport.lab import Lab, Node

RECEIVED = re.compile(r"Received: (\d+) file\(s\) of ([0-9.]+) MiB arrived, ([0-9.]+) MiB")


def _wire_mib(log: str) -> float:
    """MiB over the wire in the joiner's last `Received:` line of log."""
    found = RECEIVED.findall(log)
    assert found, log[-3000:]
    return float(found[-1][2])


def _small_gcache(lab: Lab, donor: Node) -> None:
    """The donor with a 1 MiB gcache (restarted: it applies at start; the shared fixture
    restores it afterwards): a few MiB of writes are past what IST could send."""
    if "gcache.size=1M" in donor.provider_options:
        return
    uuid = donor.sql("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'").split()[1]
    donor.provider_options += ";gcache.size=1M;gcache.page_size=1M"
    lab.configure()
    donor.stop()
    donor.start(new_cluster=True)
    donor.wait_synced()
    assert donor.sql("SHOW STATUS LIKE 'wsrep_cluster_state_uuid'").split()[1] == uuid


def _stale_tables(donor: Node) -> None:
    """Ten tables, at rest on disk (Node.write_back). InnoDB's purge and page cleaner write
    a table's pages into its .ibd (and undo and the doublewrite buffer into ibdata1)
    whenever they get to them; a file written after a join differs from the joiner's copy
    and is rightly sent again. "Unchanged" in these tests must mean "no write since", not
    "the background threads happened to run first" (a CI run found eight of nine unchanged
    tables re-sent under the lock)."""
    donor.sql("DROP DATABASE IF EXISTS stale")
    labmod.load_data(donor, 1500, database="stale", tables=10)
    donor.write_back(120)


def _write_past_gcache(donor: Node) -> None:
    """One table in ten changes, with about 4 MiB of writesets."""
    for chunk in range(4):
        lo = 100_000 + chunk * 2000
        donor.sql(
            f"INSERT INTO stale.t3 SELECT seq, MD5(seq), seq/3, REPEAT('z', 400), NOW() "
            f"FROM stale.seq_{lo}_to_{lo + 1999}"
        )


def _files(node: Node) -> dict[str, os.stat_result]:
    """Every regular file of node's datadir, by path relative to it."""
    out = {}
    for root, _, names in os.walk(node.datadir):
        for n in names:
            path = os.path.join(root, n)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                out[os.path.relpath(path, node.datadir)] = st
    return out


RESENT = re.compile(r"sent again under it \d+ changed file\(s\), ([0-9.]+) MiB")


@pytest.mark.parametrize("method", ["py_rsync", "py_rsync_wan"])
def test_stale_rejoin_sends_only_what_changed(lab: Lab, donor: Node, method: str) -> None:
    """A member stopped, one table in ten changed past the gcache, the rejoin: the unchanged
    files are not written again (the rejoined node holds their old inodes) and crossed no
    wire; on a LAN (py_rsync) a changed file crosses whole, on a WAN (py_rsync_wan) as a
    delta against the old copy."""
    _small_gcache(lab, donor)
    _stale_tables(donor)
    donor.sst_method = method
    donor.sst_options = {}
    joiner = lab.add_node(sst_method=method)
    join(lab, donor, joiner)
    full = _wire_mib(joiner.log_text())
    joiner.stop()
    uuid = datadir.grastate_uuid(joiner.datadir)
    assert uuid, "the member's grastate.dat names its cluster"
    # py_rsync skips unread what both sides' records vouch for (sst/records.py): a file
    # the joiner's disk changed, its size and mtime put back, must not be among them.
    torn = os.path.join(joiner.datadir, "stale", "t5.frm")
    if method == "py_rsync":
        st = os.stat(torn)
        with open(torn, "r+b") as f:
            f.write(b"\0" * 64)
        os.utime(torn, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = _files(joiner)
    _write_past_gcache(donor)
    j_at, d_at = len(joiner.log_text()), len(donor.log_text())
    join(lab, donor, joiner)
    jlog, dlog = joiner.log_text()[j_at:], donor.log_text()[d_at:]
    assert "IST requested by the donor" not in jlog  # a full SST, not an IST
    assert f"Offering the old datadir as the basis (cluster {uuid})" in jlog
    how = "each whole (LAN)" if method == "py_rsync" else "as deltas (WAN)"
    rule = f"Basis rule: basis: same cluster UUID {uuid}: only changed files are sent, {how}"
    assert rule in dlog
    assert "The donor sent into the basis staging" in jlog
    assert labmod.checksums(donor, ["stale"]) == labmod.checksums(joiner, ["stale"])
    # The unchanged files were not written again: every file of the database but the
    # changed table's (.ibd and .frm of the nine others, db.opt) is its old inode on the
    # rejoined node (the basis's hard link); the changed table's is a new one.
    after = _files(joiner)
    kept = {f for f, st in after.items() if f in before and before[f].st_ino == st.st_ino}
    unchanged = {f for f in before if f.startswith("stale/")} - {"stale/t3.ibd", "stale/t5.frm"}
    assert len(unchanged) >= 18 and unchanged <= kept, sorted(unchanged - kept)
    assert "stale/t3.ibd" not in kept
    with open(os.path.join(donor.datadir, "stale", "t5.frm"), "rb") as d, open(torn, "rb") as j:
        assert d.read() == j.read()
    if method == "py_rsync":
        assert "stale/t5.frm" not in kept
        m = re.search(r"Record [0-9a-f]{8} of the joiner's last SST: (\d+) file\(s\)", dlog)
        assert m and int(m.group(1)) >= 18, dlog[-3000:]
        assert "record of its last SST vouches for" in jlog
    else:  # delta mode keeps every old file as a basis (README, "Stale joiners")
        assert "Record " not in dlog and "vouches" not in jlog
    # What crossed the wire: at most the files not kept, plus what changed again during
    # the pre-copy and went once more under the lock (the donor's own count).
    stale = _wire_mib(jlog)
    m = RESENT.search(dlog)
    assert m, dlog[-3000:]
    fresh = sum(st.st_size for f, st in after.items() if f not in kept) / 2**20
    assert stale <= fresh + float(m.group(1)) + 1, (stale, fresh, m.group(1))
    if method == "py_rsync_wan":  # deltas: the changed files' unchanged blocks stay too
        assert stale <= 0.3 * full, (stale, full)
    else:
        assert stale < full, (stale, full)
    assert not os.path.exists(os.path.join(joiner.datadir, datadir.BASIS))
    assert_clean(lab, joiner)
    lab.remove_node(joiner)
    nothing_left(lab, donor)


def test_another_clusters_data_is_not_a_basis(lab: Lab, donor: Node) -> None:
    """A joiner whose grastate.dat names another cluster (its data is that cluster's as far
    as Galera and the SST know) gets everything, and the donor says why."""
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    joiner = lab.add_node(sst_method="py_rsync")
    join(lab, donor, joiner)
    joiner.stop()
    other = "0badc0de-1111-11ee-8000-000000000042"
    grastate = os.path.join(joiner.datadir, "grastate.dat")
    with open(grastate, encoding="utf-8") as f:
        text = f.read()
    ours = datadir.grastate_uuid(joiner.datadir)
    with open(grastate, "w", encoding="utf-8") as f:
        f.write(text.replace(ours, other))
    j_at, d_at = len(joiner.log_text()), len(donor.log_text())
    join(lab, donor, joiner)
    jlog, dlog = joiner.log_text()[j_at:], donor.log_text()[d_at:]
    assert (
        f"Basis rule: full transfer: the joiner's data belongs to cluster {other}, "
        f"not this cluster {ours}"
    ) in dlog
    assert "sent into the basis staging" not in jlog
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    lab.remove_node(joiner)
    nothing_left(lab, donor)


def _donor_script(donor: Node) -> psutil.Process | None:
    """The donor's running SST script (a child of its mariadbd)."""
    assert donor.proc is not None
    for c in psutil.Process(donor.proc.pid).children(recursive=True):
        try:
            if any("wsrep_sst_" in part for part in c.cmdline()[:2]):
                return c
        except psutil.NoSuchProcess:
            continue
    return None


def test_failed_join_resumes_from_what_arrived(lab: Lab, donor: Node) -> None:
    """The donor's SST script dies in the pre-copy once InnoDB's system tablespace arrived;
    the joiner keeps what arrived, and the retry moves less than a full SST by about that,
    with the data equal."""
    donor.sst_method = "py_rsync"
    donor.sst_options = {"rlimit": "4m"}
    donor.write_back(120)  # what arrives stays what the donor has, but for the lock's writes
    joiner = lab.add_node(sst_method="py_rsync")
    lab.configure()
    joiner.start()
    staged = os.path.join(joiner.datadir, datadir.STAGING)
    wait_for(lambda: os.path.exists(os.path.join(staged, "ibdata1")), 120, "ibdata1 arrived")
    script = _donor_script(donor)
    assert script is not None
    for p in [script, *script.children(recursive=True)]:
        p.kill()
    joiner.wait_exit(120)
    wait_for(
        lambda: (st := status.read(joiner.datadir)) is not None and st["state"] != "running",
        60,
        "the joiner's script to give up",
    )
    kept = resume.read(joiner.datadir)
    assert kept is not None, os.listdir(joiner.datadir)
    assert kept.size >= 12 << 20  # ibdata1 at least
    assert os.stat(resume.path(joiner.datadir)).st_mode & 0o777 == 0o700
    joiner.stop()
    donor.wait_synced(60)
    donor.sst_options = {}
    open(joiner.error_log, "w").close()  # the failed attempt's ERROR line is expected
    join(lab, donor, joiner)
    jlog = joiner.log_text()
    assert f"Offering the partial transfer from {kept.position}" in jlog
    retry = _wire_mib(jlog)
    total = datadir_mib(donor)
    assert retry <= total - 0.8 * kept.size / 2**20, (retry, total, kept.size)
    assert not os.path.exists(resume.path(joiner.datadir))
    assert labmod.checksums(donor) == labmod.checksums(joiner)
    lab.remove_node(joiner)
    nothing_left(lab, donor)


def datadir_mib(node: Node) -> float:
    """The size of what an SST of node's datadir sends, in MiB (about)."""
    total = 0
    for root, _, files in os.walk(node.datadir):
        for f in files:
            if f == "galera.cache" or re.fullmatch(r"donor-bin\.[0-9]+", f):
                continue  # never sent (the newest binlog goes in a tar: counted in full)
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                continue
    return total / 2**20
