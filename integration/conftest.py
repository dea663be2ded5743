"""Local-cluster tier: real mariadbd + Galera nodes on 127.0.0.N, one donor shared by tests."""

from __future__ import annotations

import grp
import os
import shutil
from collections.abc import Generator, Iterator

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


@pytest.fixture(autouse=True)
def _no_node_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did, pass or fail, the nodes it added are gone afterwards (the shared
    donor and nodes of module-scoped fixtures stay)."""
    if "lab" not in request.fixturenames:
        yield
        return
    lb: Lab = request.getfixturevalue("lab")
    before = list(lb.nodes)
    yield
    for node in list(lb.nodes):
        if node not in before:
            lb.remove_node(node)
            reap(node.directory)


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
