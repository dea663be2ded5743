"""Local-cluster tier: real mariadbd + Galera nodes on 127.0.0.N, one donor shared by tests."""

from __future__ import annotations

import grp
import os
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import pytest

from testsupport import lab as labmod
from testsupport.cluster import reap
from testsupport.lab import CertPaths, Lab, Node

REQUIRED_TOOLS = (
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "rsync",
    "stunnel4",
    "tar",
    "my_print_defaults",
    "wsrep_sst_py_rsync",
)


def _prerequisites() -> None:
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if not os.path.exists(labmod.GALERA):
        missing.append(labmod.GALERA)
    if missing or os.geteuid() != 0:
        pytest.fail(
            f"local-cluster tier cannot run: missing {missing or 'nothing'}, "
            f"root={os.geteuid() == 0}; run scripts/setup.sh as root",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab for the whole session; node directories are kept if a test failed."""
    _prerequisites()
    lb = Lab()
    yield lb
    lb.close(keep=bool(os.environ.get("GALERA_SST_KEEP")))


@pytest.fixture(scope="session")
def certs(lab: Lab) -> CertPaths:
    """A CA and certificates for every possible node name with IP and DNS SANs."""
    d = os.path.join(lab.base, "certs")
    nodes = {f"node{i}": f"127.0.0.{i}" for i in range(1, labmod.MAX_NODES + 1)}
    paths = labmod.make_certs(d, nodes)
    os.chown(d, 0, grp.getgrnam("mysql").gr_gid)
    return paths


@pytest.fixture(scope="session")
def donor(lab: Lab) -> Node:
    """A bootstrapped node with data in several tables, shared by every join test."""
    node = lab.add_node(mysqld_options={"log-bin": "donor-bin"})
    # Weight 2: the donor keeps quorum when a joiner is killed or cut off (fault tests).
    node.provider_options = "pc.weight=2"
    lab.bootstrap(node)
    labmod.load_data(node, 3000)
    node.sql(
        "CREATE DATABASE other; CREATE TABLE other.m (id INT PRIMARY KEY, t TEXT) "
        "ENGINE=InnoDB; INSERT INTO other.m SELECT seq, REPEAT('x', seq % 97) "
        "FROM other.seq_1_to_500; CREATE TABLE other.a (id INT PRIMARY KEY) ENGINE=Aria;"
        "INSERT INTO other.a SELECT seq FROM other.seq_1_to_50"
    )
    return node


@dataclass(frozen=True)
class NodeConfig:
    """What a test may change on a shared node, and the server it found running."""

    sst_method: str
    sst_options: dict[str, str]
    mysqld_options: dict[str, str]
    path_prefix: str
    provider_options: str
    user: str
    pid: int | None

    @classmethod
    def of(cls, node: Node) -> NodeConfig:
        """node's configuration now (copies of its dicts)."""
        return cls(
            node.sst_method,
            dict(node.sst_options),
            dict(node.mysqld_options),
            node.path_prefix,
            node.provider_options,
            node.user,
            None if node.proc is None or node.proc.poll() is not None else node.proc.pid,
        )

    def restore(self, node: Node) -> None:
        """Put the configuration back on node (not the server: see restore_shared_node)."""
        node.sst_method = self.sst_method
        node.sst_options = dict(self.sst_options)
        node.mysqld_options = dict(self.mysqld_options)
        node.path_prefix = self.path_prefix
        node.provider_options = self.provider_options
        node.user = self.user


def _synced_soon(node: Node, timeout: float = 20) -> bool:
    """node is Synced within timeout (a donor may still be desynced for a joiner just gone)."""
    try:
        node.wait_synced(timeout)
    except labmod.LabError:
        return False
    return True


def restore_shared_node(lab: Lab, node: Node, before: NodeConfig) -> None:
    """After a test, node is configured as before it and running as a Synced one-node
    cluster of its own configuration: restarted if the test stopped, killed or restarted it,
    changed what mariadbd reads only at start, or left it not Synced; its option file is
    rewritten in any case (the SST scripts read it at every transfer)."""
    after = NodeConfig.of(node)
    before.restore(node)
    lab.configure()
    restart = (
        after.pid is None
        or after.pid != before.pid
        or (after.mysqld_options, after.path_prefix, after.provider_options, after.user)
        != (before.mysqld_options, before.path_prefix, before.provider_options, before.user)
        or not _synced_soon(node)
    )
    if restart:
        node.stop()
        reap(node.directory)
        others = [n for n in lab.nodes if n is not node and n.proc and n.proc.poll() is None]
        if not others:  # a one-node cluster again, also after a crash (safe_to_bootstrap: 0)
            grastate = os.path.join(node.datadir, "grastate.dat")
            if os.path.exists(grastate):
                with open(grastate, encoding="utf-8") as f:
                    text = f.read()
                with open(grastate, "w", encoding="utf-8") as f:
                    f.write(text.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1"))
        node.start(new_cluster=not others)  # else it rejoins the members of a module fixture
        node.wait_synced()


@pytest.fixture(autouse=True)
def _no_node_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did, pass or fail, the nodes it added are gone afterwards (the shared
    donor and nodes of module-scoped fixtures stay), and the shared donor, if the test used
    it, is configured and running as the test found it (one failure does not cascade)."""
    if "lab" not in request.fixturenames:
        yield
        return
    lb: Lab = request.getfixturevalue("lab")
    shared: Node | None = (
        request.getfixturevalue("donor") if "donor" in request.fixturenames else None
    )
    before = list(lb.nodes)
    config = NodeConfig.of(shared) if shared is not None else None
    yield
    for node in list(lb.nodes):
        if node not in before:
            lb.remove_node(node)
            reap(node.directory)
    if shared is not None and config is not None and shared in lb.nodes:
        restore_shared_node(lb, shared, config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, print every node's error log tail (the evidence stays in CI output)."""
    rep = yield
    if rep.when == "call" and rep.failed:
        lb = getattr(item, "funcargs", {}).get("lab")
        if isinstance(lb, Lab):
            os.environ["GALERA_SST_KEEP"] = "1"
            for n in lb.nodes:
                rep.sections.append((f"{n.name} error log tail", n.log_tail(80)))
        cluster = getattr(item, "funcargs", {}).get("cluster")  # the container tier's
        for n in getattr(cluster, "nodes", []):
            rep.sections.append((f"container {n.name} error log tail", n.log_tail(80)))
    return rep
