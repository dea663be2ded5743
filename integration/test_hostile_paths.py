"""White space and shell metacharacters in every path mariadbd hands over, in real joins
(finding 10): the lab's base directory, every node's datadir, tmpdir and option file
(--defaults-file), and the certificate, key and CA paths.

The certificate, key and CA paths, which only option files carry, hold every character
of the finding (white space, both quotes, `$`, backquote, `;`, `&`, `#`, `,`, `:`) and `%`.
The others hold all but what mariadbd 10.11.19 itself cannot pass on:
- the datadir no `'`: mariadbd puts `--datadir '<dir>'` into its `sh -c` line inside single
  quotes without escaping (docs/contract.md 1.2, 1.3; measured: a datadir `data 'q'`
  reaches the script as `data q`);
- the option file no `'` (the same for `--defaults-file '<file>'`) and no backquote:
  mariadbd double-quotes its own argv (`--defaults-file=<file>`) into `--mysqld-args`
  without escaping backquotes (docs/contract.md 1.6);
- the tmpdir no `:`, since mariadbd's own `tmpdir` is a `:`-separated list.

One donor serves every case; each case joins a fresh node and checks: the join succeeds,
the data are equal, no ERROR line, nothing left running, and the SST's private run
directory was made in the configured tmpdir (not the environment's TMPDIR) and is gone."""

from __future__ import annotations

import grp
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from testsupport import lab as labmod
from testsupport.cluster import join
from testsupport.lab import CertPaths, Lab, Node, NodeNames

EVERY = " \t\"'$`;&#,:%"  # the characters of the finding, and `%` (rsyncd.conf's)
BASE = ' b "$;&#,100%'
NAMES = NodeNames(data="data :`id` #;&,", tmp="env tmp 'q' `id` $HOME", cnf="my cnf #;&,$x:y.cnf")
SST_TMP = "sst\ttmp 'q' `id` \"$HOME\" #;&,%x"
CERTS = "certs\t'q' `id` \"$(id)\" :c #;&,%PATH% "

CASES = [  # method, TLS mode, the joiner's user (as root the rsync daemon stays root)
    ("py_rsync", "DISABLED", "mysql"),
    ("py_rsync", "REQUIRED", "mysql"),
    ("py_rsync", "VERIFY_CA", "mysql"),
    ("py_rsync", "VERIFY_IDENTITY", "mysql"),
    ("py_rsync", "VERIFY_CA", "root"),
    ("py_rsync_wan", "VERIFY_IDENTITY", "mysql"),
    ("py_mariabackup", "DISABLED", "mysql"),
    ("py_mariabackup", "VERIFY_IDENTITY", "mysql"),
]


def sst_tmpdir(node: Node) -> str:
    """A tmpdir for node other than its scripts' TMPDIR, owned by its user, configured in
    [mysqld] (which wins over [sst], and which mariadbd uses too)."""
    path = os.path.join(node.directory, SST_TMP)
    os.makedirs(path, exist_ok=True)
    labmod.chown(path, node.user)
    node.mysqld_options["tmpdir"] = path
    return path


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A lab under a base directory with white space and metacharacters in its name."""
    parent = tempfile.mkdtemp(prefix="gsst", suffix=BASE, dir="/var/tmp")
    os.chmod(parent, 0o755)
    lb = Lab(parent, names=NAMES)
    try:
        yield lb
    finally:
        keep = bool(os.environ.get("GALERA_SST_KEEP"))
        lb.close(keep=keep)
        if not keep:
            shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def certs(lab: Lab) -> CertPaths:
    """The lab's CA and node certificates, in a directory named with every character."""
    d = os.path.join(lab.base, CERTS)
    nodes = {f"node{i}": f"127.0.0.{i}" for i in range(1, len(CASES) + 2)}  # donor, joiners
    paths = labmod.make_certs(d, nodes)
    os.chown(d, 0, grp.getgrnam("mysql").gr_gid)
    return paths


@pytest.fixture(scope="module")
def donor(lab: Lab) -> Node:
    """One bootstrapped donor with data in InnoDB and Aria tables, for every case."""
    node = lab.add_node()
    sst_tmpdir(node)
    lab.bootstrap(node)
    labmod.load_data(node, 1000)
    node.sql(
        "CREATE DATABASE other; CREATE TABLE other.m (id INT PRIMARY KEY, t TEXT) "
        "ENGINE=InnoDB; INSERT INTO other.m SELECT seq, REPEAT('x', seq % 97) "
        "FROM other.seq_1_to_500; CREATE TABLE other.a (id INT PRIMARY KEY) ENGINE=Aria;"
        "INSERT INTO other.a SELECT seq FROM other.seq_1_to_50"
    )
    return node


@contextmanager
def run_dirs_seen(*directories: str) -> Iterator[dict[str, set[str]]]:
    """The galera-sst.* run directories that appear in each directory while the block runs
    (sampled every 20 ms by a thread)."""
    seen: dict[str, set[str]] = {d: set() for d in directories}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for d in directories:
                try:
                    seen[d] |= {n for n in os.listdir(d) if n.startswith("galera-sst.")}
                except OSError:
                    continue
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def run_dirs_left(directory: str) -> list[str]:
    """The galera-sst.* run directories still in directory."""
    return [n for n in os.listdir(directory) if n.startswith("galera-sst.")]


@pytest.mark.parametrize(("method", "mode", "user"), CASES)
def test_join_with_hostile_paths(
    lab: Lab, donor: Node, certs: CertPaths, method: str, mode: str, user: str
) -> None:
    joiner = lab.add_node(sst_method=method, user=user)
    donor.sst_method = method
    joiner_tmp, donor_tmp = sst_tmpdir(joiner), sst_tmpdir(donor)
    joiner.sst_options = labmod.tls_options(certs, joiner.name, mode)
    donor.sst_options = labmod.tls_options(certs, donor.name, mode)
    cert, key = certs.certs[joiner.name]
    # The fixtures do what the module's docstring claims.
    assert set(EVERY) - set("'\t") <= set(joiner.datadir)
    assert set(EVERY) - set(":") <= set(joiner_tmp)
    assert set(EVERY) - set("'`\t") <= set(joiner.cnf)
    assert set(EVERY) <= set(cert) & set(key) & set(certs.ca)
    try:
        watched = (joiner_tmp, donor_tmp, joiner.tmpdir, donor.tmpdir)
        with run_dirs_seen(*watched) as seen:
            join(lab, donor, joiner)
        # Each script made its run directory where tmpdir says, not in TMPDIR, and removed it.
        assert seen[joiner_tmp] and seen[donor_tmp]
        assert seen[joiner.tmpdir] == seen[donor.tmpdir] == set()
        for d in watched:
            assert run_dirs_left(d) == [], d
    finally:
        donor.sst_options = {}
        lab.remove_node(joiner)
