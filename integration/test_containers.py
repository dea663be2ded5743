"""Container tier: 3-node clusters in containers (testcontainers, a dockerd of our own, images
built here), nodes known only by host name, SST under VERIFY_IDENTITY with certificates that
name those host names and nothing else; and the faults containers make easy: the donor killed
mid-transfer (`docker kill`: its whole host), its network disconnected, and the whole donor
paused past the idle timeout. After each, the joiner reports the cause, keeps its old data
(its datadir unchanged, and a server started on it finds its rows), nothing is left running
in any container, and a retry joins.
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest

from integration.containers import (
    BASES,
    BOOKWORM,
    DATADIR,
    SOCKET,
    SST_PASSWORD,
    TRIXIE,
    Base,
    Cluster,
    CNode,
    ContainerError,
    Engine,
    ensure_images,
    run_mtr,
    wait_for,
)
from sst import datadir
from testsupport import lab as labmod
from testsupport.lab import checksums
from testsupport.leaks import watching

pytestmark = pytest.mark.containers

HOSTS = ("node1", "node2", "node3")
OURS = {"mariabackup": "py_mariabackup", "rsync": "py_rsync", "rsync_wan": "py_rsync_wan"}
SEED_ROWS = 41
IDLE = "12"  # [sst] sst-idle-timeout for the fault runs, seconds
# Galera evicts a silent member after evs.suspect_timeout (5 s by default), and the joiner's
# mariadbd then aborts its SST: slower eviction lets the fault tests see the joiner's own
# idle timeout fire (IDLE), which is what they are about.
SLOW_EVICTION = "evs.suspect_timeout=PT30S;evs.inactive_timeout=PT60S"
# What the joiner's log says when Galera itself refuses the chosen donor (ENOMSG).
GALERA_REFUSED = "failed: No message of desired type"
# A node reports its last committed to the group (which moves the group's certification
# index on) only after more than 127 transactions or 1024 keys since its last report
# (galera's Certification::index_purge_required): 64 commits were not always enough.
NUDGE_COMMITS = 300


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """Our own dockerd with the images built; on teardown every container and network we
    made is removed and the daemon is stopped by its PID, whatever the tests did."""
    eng = Engine()
    try:
        client = eng.start()
        ensure_images(client, (BOOKWORM, TRIXIE))
        yield eng
    finally:
        eng.close()
    assert eng.leftovers() == []


def bootstrap_with_data(cluster: Cluster) -> CNode:
    first = cluster.nodes[0]
    # Weight 3 of 5: node1 keeps the primary component when the donor and the joiner are
    # both gone (a killed donor host, and the joiner's mariadbd aborting its failed SST).
    first.provider_options = f"pc.weight=3;{SLOW_EVICTION}"
    first.start(new_cluster=True)
    first.wait_synced()
    first.create_sst_user()
    first.sql(
        "CREATE DATABASE app; "
        "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(64), b BLOB) ENGINE=InnoDB; "
        "INSERT INTO app.t SELECT seq, MD5(seq), REPEAT(CHAR(65 + seq % 26), 2000) "
        "FROM app.seq_1_to_20000; "
        "CREATE TABLE app.a (id INT PRIMARY KEY) ENGINE=Aria; "
        "INSERT INTO app.a SELECT seq FROM app.seq_1_to_300",
        timeout=300,
    )
    return first


def join(donor: CNode, joiner: CNode, *, expect_ours: bool = True) -> None:
    """joiner joins by SST from donor: Synced, the same data everywhere, no ERROR line, no
    process or listener left on either, and no secret seen in any argv or environment
    (expect_ours: at least one side ran ours; False only for stock-to-stock)."""
    joiner.mysqld_options["wsrep_sst_donor"] = donor.name
    with watching(SST_PASSWORD) as watch:
        joiner.start()
        joiner.wait_synced()
        donor.wait_synced(60)
    log = joiner.log_text()
    watch.scan_text(f"{joiner.name}'s error log", log)
    watch.scan_text(f"{donor.name}'s error log", donor.log_text())
    if expect_ours:
        assert watch.scripts_seen >= 1, "none of our SST scripts was seen running"
    assert watch.hits == []
    assert joiner.sst_errors() == [], joiner.sst_errors()
    running = rf"Running: 'wsrep_sst_{joiner.sst_method} --role 'joiner' --address '{joiner.name}:"
    assert re.search(running, log), "the joiner's SST address is not its host name"
    assert "SST completed on joiner" in log
    expected = checksums(donor, ["app"])
    for n in joiner.cluster.nodes:
        if n.server_pid() is not None:
            assert checksums(n, ["app"]) == expected, n.name
    for n in (donor, joiner):
        nothing_left(n)


@contextmanager
def verified_cluster(
    engine: Engine,
    method: str,
    bases: Base | Sequence[Base] = BOOKWORM,
    mode: str = "VERIFY_IDENTITY",
) -> Iterator[Cluster]:
    """Three nodes on method under mode (VERIFY_IDENTITY), node1 bootstrapped with data;
    their error logs printed if anything fails, and the containers removed in any case."""
    c = Cluster(engine, HOSTS, method, bases)
    try:
        for n in c.nodes:
            n.tls(mode)
            n.provider_options = SLOW_EVICTION
        bootstrap_with_data(c)
        yield c
    except BaseException:
        for n in c.nodes:
            print(f"--- {n.name} error log tail\n{n.log_tail(40)}")
        raise
    finally:
        c.close()


# (method, MariaDB series): the fault tests run on 10.11; 11.8 proves the joins (and rsync_wan).
ON_10_11 = [("mariabackup", "10.11"), ("rsync", "10.11")]
ON_11_8 = [("mariabackup", "11.8"), ("rsync", "11.8"), ("rsync_wan", "11.8")]


def _id(param: tuple[str, str]) -> str:
    return f"{param[0]}-{param[1]}"


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, engine: Engine) -> Iterator[Cluster]:
    """All three on our method and series (request.param): node2 joined from node1, node3
    from node2 (a donor that itself came by SST)."""
    method, version = request.param
    with verified_cluster(engine, OURS[method], BASES[version]) as c:
        node1, node2, node3 = c.nodes
        join(node1, node2)
        join(node2, node3)
        yield c


@pytest.mark.parametrize("cluster", ON_10_11 + ON_11_8, ids=_id, indirect=True)
def test_three_nodes_join_by_host_name_under_verify_identity(cluster: Cluster) -> None:
    node1, node2, node3 = cluster.nodes
    assert {n.status_var("wsrep_cluster_size") for n in cluster.nodes} == {"3"}
    tls = [ln for ln in node3.log_text().splitlines() if "TLS VERIFY_IDENTITY" in ln]
    assert tls, "the joiner did not report its TLS mode"
    # Written on one node, there on all three.
    node3.sql("INSERT INTO app.t (id, v) VALUES (100001, 'from node3')")
    for n in (node1, node2):
        assert n.sql("SELECT v FROM app.t WHERE id = 100001").strip() == "from node3"


def nothing_left(node: CNode) -> None:
    """No SST process and no SST listener in node's container."""
    wait_for(lambda: node.leftovers() == [], 30, f"nothing left on {node.name}")
    assert not node.sst_port_open(), f"{node.name}'s SST port is still open"


def drop_in(node: CNode) -> None:
    """`galera-sst install` on node: dpkg-divert puts ours in place of the stock scripts (a
    running mariadbd uses it from its next SST on)."""
    out = node.exec(["galera-sst", "install", "--replace-stock"])
    assert "/usr/bin/wsrep_sst_mariabackup: galera-sst (stock diverted" in out, out
    diversions = node.exec(["dpkg-divert", "--list", "/usr/bin/wsrep_sst_*"])
    assert diversions.count("by galera-sst") == 5, diversions


def force_full_sst(node: CNode) -> None:
    """Stop node so that its next start takes a full SST (no grastate: an operator's way)."""
    node.stop()
    node.exec(["rm", "-f", f"{DATADIR}/grastate.dat", f"{DATADIR}/gvwstate.dat"])


def rejoin_by_sst(donor: CNode, node: CNode, *, expect_ours: bool = True) -> None:
    """node leaves, and comes back by a full SST."""
    force_full_sst(node)
    node.clear_log()
    join(donor, node, expect_ours=expect_ours)


def ran_ours(node: CNode, role: str) -> None:
    """node's last SST was ours, in role, and it succeeded (stock writes no status file)."""
    st = node.status_file()
    assert st is not None and (st["role"], st["state"]) == (role, "succeeded"), st


def uninstall(node: CNode) -> None:
    """`galera-sst uninstall` on node: no diversion left, and every file of the MariaDB
    packages as dpkg shipped it (dpkg --verify checks them against the packages' md5sums)."""
    node.exec(["galera-sst", "uninstall"])
    assert "galera-sst" not in node.exec(["dpkg-divert", "--list", "/usr/bin/wsrep_sst_*"])
    fmt = "${db:Status-Abbrev} ${Package}\\n"
    status = node.exec(["dpkg-query", "-W", "-f", fmt, "mariadb-*", "galera-4"])
    installed = [ln.split()[-1] for ln in status.splitlines() if ln.startswith("ii")]
    assert "mariadb-server" in installed, installed
    assert node.exec(["dpkg", "--verify", *installed], check=False).strip() == ""
    for name in ("mariabackup", "rsync", "rsync_wan", "mysqldump", "backup"):
        node.exec(["test", "!", "-e", f"/usr/bin/wsrep_sst_{name}.galera-sst-stock"])


# (method, MariaDB series, ssl-mode): the stock rsync joiner cannot verify a CA-issued
# certificate's identity (findings.md), so the rsync pairing runs under VERIFY_CA.
DROP_IN = [
    ("mariabackup", "10.11", "VERIFY_IDENTITY"),
    ("mariabackup", "11.8", "VERIFY_IDENTITY"),
    ("rsync", "11.8", "VERIFY_CA"),
]


@pytest.mark.parametrize(
    ("method", "version", "mode"), DROP_IN, ids=[f"{m}-{v}-{t}" for m, v, t in DROP_IN]
)
def test_rolling_migration_to_drop_in(engine: Engine, method: str, version: str, mode: str) -> None:
    """A cluster on the stock scripts moves to galera-sst one node at a time, the way
    drop-in mode is meant to be used, every SST under TLS between hosts known by name: stock
    to stock, stock donor to our joiner, our donor to a stock joiner, and ours to ours, each
    a full SST with equal data everywhere. The status file tells whose script ran: ours
    writes one, stock does not. Then `galera-sst uninstall` gives the packages' files back."""
    with verified_cluster(engine, method, BASES[version], mode) as c:
        node1, node2, node3 = c.nodes
        join(node1, node2, expect_ours=False)
        assert node2.status_file() is None
        drop_in(node3)
        join(node2, node3)  # stock donor, our joiner
        ran_ours(node3, "joiner")
        rejoin_by_sst(node3, node1, expect_ours=True)  # our donor, stock joiner
        assert node1.status_file() is None
        ran_ours(node3, "donor")
        drop_in(node1)
        drop_in(node2)
        rejoin_by_sst(node1, node2)  # ours to ours
        ran_ours(node1, "donor")
        ran_ours(node2, "joiner")
        for n in c.nodes:
            uninstall(n)


def test_rolling_upgrade_from_10_11_to_11_8(engine: Engine) -> None:
    """A 3-node 10.11 cluster on py_mariabackup is upgraded to 11.8 one host at a time: each
    host's container replaced by an 11.8 one under the same name with a fresh datadir, which
    rejoins by a full SST (10.11 donor to 11.8 joiner, then 11.8 to 11.8), all under
    VERIFY_IDENTITY with equal data everywhere. On the way, a 10.11 node asked to join from
    an 11.8 donor refuses after stage 1, with one ERROR line naming both versions, its old
    data untouched, and joins once it is upgraded."""
    with verified_cluster(engine, "py_mariabackup", BOOKWORM) as c:
        node1, node2, node3 = c.nodes
        join(node1, node2)
        join(node2, node3)
        node3 = c.replace(node3, TRIXIE)
        join(node2, node3)  # 10.11 donor, 11.8 joiner
        assert "11.8." in node3.sql("SELECT VERSION()")
        # The direction that cannot work: an 11.8 donor's backup prepared on 10.11.
        before = seed(node2)
        node2.mysqld_options["wsrep_sst_donor"] = node3.name
        node2.clear_log()
        node3.clear_log()
        node2.start()
        assert node2.wait_exit(90), "the 10.11 joiner did not give up"
        code, why = joiner_failure(node2)
        assert code == errno.EPROTONOSUPPORT, why
        assert re.search(r"donor runs MariaDB 11\.8\.\d+ .* mariadb-backup is 10\.11\.", why), why
        assert files(node2) == before
        node3.wait_synced(60)
        for n in (node2, node3):
            nothing_left(n)
        node2 = c.replace(node2, TRIXIE)
        join(node3, node2)  # 11.8 to 11.8
        node1 = c.replace(node1, TRIXIE)
        join(node2, node1)
        assert {n.base for n in c.nodes} == {TRIXIE}
        assert {n.status_var("wsrep_cluster_size") for n in c.nodes} == {"3"}


def test_mysqldump_drop_in_on_11_8(engine: Engine) -> None:
    """On 11.8, mysqldump by its stock name (drop-in): our donor dumps into the joiner's
    server over TLS, verifying its certificate and host name; the data arrives whole, no
    ERROR line, nothing left running."""
    with verified_cluster(engine, "mysqldump", TRIXIE) as c:
        node1, node2, _ = c.nodes
        node1.sql("GRANT ALL PRIVILEGES ON *.* TO 'sst'@'localhost' WITH GRANT OPTION")
        drop_in(node1)
        node2.mysqld_options.update(
            {
                "ssl_ca": "/etc/galera/ca.pem",
                "ssl_cert": "/etc/galera/cert.pem",
                "ssl_key": "/etc/galera/key.pem",
            }
        )
        pw = labmod.sql_string(SST_PASSWORD)
        with node2.standalone():
            node2.sql(
                f"CREATE USER 'sst'@'%' IDENTIFIED BY {pw}; "
                "GRANT ALL PRIVILEGES ON *.* TO 'sst'@'%' WITH GRANT OPTION"
            )
        node1.clear_log()
        node2.mysqld_options["wsrep_sst_donor"] = node1.name
        with watching(SST_PASSWORD) as watch:
            node2.start()
            node2.wait_synced()
        assert watch.hits == []
        assert watch.scripts_seen >= 1
        donor_log = node1.log_text()
        assert "verifying the server certificate and name" in donor_log, donor_log[-3000:]
        assert "mysqldump SST completed on donor" in donor_log, donor_log[-3000:]
        # 11.8 reads the donor's `done` line: without it, "Failed to read from" and a
        # position of -1 (docs/contract.md 2.3).
        assert re.search(r"SST sent: [0-9a-f-]{36}:[0-9]+", donor_log), donor_log[-3000:]
        assert "Failed to read from" not in donor_log, donor_log[-3000:]
        assert node1.sst_errors() == [] and node2.sst_errors() == []
        assert checksums(node2, ["app"]) == checksums(node1, ["app"])
        nothing_left(node1)
        uninstall(node1)


def test_mariadb_galera_suite_subset_on_11_8(engine: Engine) -> None:
    """MariaDB 11.8's own Galera SST/IST tests (Debian 13's mariadb-test, seven of them:
    rsync plain, VERIFY_CA IST and the missing-stunnel hook, mariabackup plain, encrypt with
    key and VERIFY_CA IST, mysqldump) all pass with our programs under the stock names
    (scripts/mtr.sh --subset in a container of that release)."""
    run = run_mtr(engine, TRIXIE, ["--subset", "--timeout=20"])
    counts = (run.scripts, run.tests, run.passed, run.failed, run.skipped)
    assert counts == ("galera-sst", 7, 7, 0, 0), run.output[-4000:]
    assert run.status == 0, run.output[-4000:]


# -- faults --------------------------------------------------------------------------------


def files(node: CNode) -> dict[str, str]:
    """The joiner's datadir: every file with size and mtime, minus what Galera or a killed
    SST rewrites (the next run's to clean)."""
    out = node.exec(["find", DATADIR, "-type", "f", "-printf", r"%P %s %T@\n"])
    keep = {}
    for line in out.splitlines():
        rel, size, mtime = line.rsplit(" ", 2)
        top = rel.split("/")[0]
        if top in (*datadir.TRANSIENT, datadir.KEPT) or top in ("grastate.dat", "gvwstate.dat"):
            continue
        if top.startswith("galera_sst_status") or top == "galera.cache":
            continue
        if top.startswith("mariabackup.") and top.endswith(".log"):
            continue  # the tool's logs: each run archives the last ones (sst-log-archive)
        keep[rel] = f"{size} {mtime}"
    return keep


def seed(joiner: CNode) -> dict[str, str]:
    """Give the joiner a database of its own and a full SST at its next start; returns its
    files."""
    force_full_sst(joiner)
    with joiner.standalone():
        joiner.sql(
            "CREATE DATABASE IF NOT EXISTS mine; "
            "CREATE TABLE IF NOT EXISTS mine.t (id INT PRIMARY KEY) ENGINE=InnoDB; "
            f"INSERT IGNORE INTO mine.t SELECT seq FROM mine.seq_1_to_{SEED_ROWS}"
        )
    return files(joiner)


def receiving(joiner: CNode) -> bool:
    st = joiner.status_file()
    return bool(
        st
        and st["state"] == "running"
        and st["phase"].startswith("receiving")
        and st["bytes_done"] > 0
    )


def joiner_failure(joiner: CNode) -> tuple[int, str]:
    """The joiner script's exit status and its reason with the phase: its ERROR line, or the
    status file's when Galera aborted the joiner's mariadbd first."""
    wait_for(
        lambda: (st := joiner.status_file()) is not None and st["state"] != "running",
        30,
        "the joiner's script to finish",
    )
    st = joiner.status_file()
    assert st is not None and st["state"] == "failed", st
    errors = joiner.sst_errors()
    assert len(errors) <= 1, errors
    if errors:
        assert f", during {st['phase']}" in errors[0], (errors[0], st["phase"])
        return int(st["exit_code"]), errors[0]
    return int(st["exit_code"]), f"{st['error']} (during {st['phase']})"


def recover_donor(donor: CNode) -> None:
    """The donor's host is back: its server rejoins the cluster (restarted if it left)."""
    try:
        if donor.server_pid() is not None:
            donor.wait_synced(60)
            return
    except (AssertionError, ContainerError):
        donor.stop()
    # Its old incarnation must have left the others' view first, or Galera refuses the
    # same UUID ("A node with the same UUID already exists").
    alive = [n for n in donor.cluster.nodes if n is not donor and n.server_pid() is not None]
    wait_for(
        lambda: all(n.status_var("wsrep_cluster_size") == str(len(alive)) for n in alive),
        60,
        f"the cluster to see {donor.name} gone",
    )
    donor.mysqld_options.pop("wsrep_sst_donor", None)
    donor.start()
    try:
        donor.wait_synced()
    except ContainerError as exc:
        # A crashed node restores its old UUID from gvwstate.dat; if the others still know
        # it, Galera removes the file and stops, for a restart under a new UUID (what the
        # service manager's restart does).
        if "same UUID already exists" not in str(exc):
            raise
        donor.start()
        donor.wait_synced()


def start_receiving(cluster: Cluster, joiner: CNode) -> None:
    """Start joiner and wait until its data arrives. Galera itself may refuse a donor that
    rejoined moments ago, before any script runs (GALERA_REFUSED: its gcache begins after
    the group's certification index; docs/findings.md): then NUDGE_COMMITS transactions on
    node1 make every node report its last committed, which moves the index on, and the
    joiner starts once more."""
    for attempt in range(3):
        joiner.clear_log()
        joiner.start()
        wait_for(
            lambda: receiving(joiner) or GALERA_REFUSED in joiner.log_text(), 90, "data to arrive"
        )
        if receiving(joiner):
            return
        assert attempt < 2, f"Galera refused the donor {attempt + 1} times, commits between"
        assert joiner.wait_exit(90), "the refused joiner did not exit"
        node1 = cluster.nodes[0]
        node1.sql(
            "CREATE TABLE IF NOT EXISTS app.nudge (id INT AUTO_INCREMENT PRIMARY KEY);"
            + "INSERT INTO app.nudge () VALUES ();" * NUDGE_COMMITS
        )
        time.sleep(2)  # the reports go out from each node's service thread


def fault_run(
    cluster: Cluster, fault: Callable[[CNode], None], repair: Callable[[CNode], None]
) -> tuple[int, str]:
    """node3 (seeded) joins from node2 slowed by rlimit; fault(node2) mid-transfer; then the
    joiner's failure is checked, repair(node2) runs, node2 must be back (Synced, nothing
    left running), and the retry joins."""
    _, donor, joiner = cluster.nodes
    before = seed(joiner)
    donor.sst_options.update({"rlimit": "2m", "sst-idle-timeout": IDLE})
    joiner.sst_options.update({"sst-idle-timeout": IDLE})
    donor.write_cnf()
    joiner.mysqld_options["wsrep_sst_donor"] = donor.name
    start_receiving(cluster, joiner)
    t0 = time.monotonic()
    fault(donor)
    try:
        assert joiner.wait_exit(90), "the joiner did not give up within 90 s"
        given_up = time.monotonic() - t0
        code, why = joiner_failure(joiner)
        if GALERA_REFUSED in joiner.log_text():
            why += f" [{GALERA_REFUSED}]"
        nothing_left(joiner)
    finally:
        repair(donor)
    assert given_up < 60, f"gave up after {given_up:.0f} s"
    # The old data: unchanged, and a server started on it finds its rows.
    assert files(joiner) == before
    with joiner.standalone():
        assert joiner.sql("SELECT COUNT(*) FROM mine.t").strip() == str(SEED_ROWS)
    recover_donor(donor)
    nothing_left(donor)
    donor.sst_options.pop("rlimit")
    donor.write_cnf()
    # The retry, from node1: a donor that rejoined moments ago may be refused by Galera
    # itself before any script runs ("Cert index preload first seqno ... not found from
    # gcache", ENOMSG), which is not what this test is about.
    joiner.clear_log()
    join(cluster.nodes[0], joiner)
    assert joiner.sql("SHOW DATABASES LIKE 'mine'").strip() == ""
    return code, why


def _kill(donor: CNode) -> None:
    donor.raw.kill()  # SIGKILL to everything in the container: the host is gone


def _start_again(donor: CNode) -> None:
    donor.raw.start()


@pytest.mark.parametrize("cluster", ON_10_11, ids=_id, indirect=True)
def test_donor_killed_mid_transfer(cluster: Cluster) -> None:
    code, why = fault_run(cluster, _kill, _start_again)
    assert code == 32, why
    assert "during receiving" in why, why


def assert_stall(code: int, why: str) -> None:
    """The joiner saw its donor fall silent mid-transfer: EPIPE (32), said so, and when:
    its own idle timeout fired. The one other outcome accepted is Galera refusing the donor
    by itself (its log names it, ENOMSG: a donor that rejoined moments ago, see
    docs/findings.md), which aborts the joiner's mariadbd before any fault matters."""
    assert code == 32, why
    assert "during receiving" in why, why
    idle_fired = re.search(rf"no (data|progress) for {IDLE} s", why)
    assert idle_fired or GALERA_REFUSED in why, why


@pytest.mark.parametrize("cluster", ON_10_11, ids=_id, indirect=True)
def test_donor_network_disconnected_mid_transfer(cluster: Cluster) -> None:
    assert_stall(*fault_run(cluster, cluster.disconnect, cluster.reconnect))


@pytest.mark.parametrize("cluster", ON_10_11, ids=_id, indirect=True)
def test_donor_paused_past_idle_timeout(cluster: Cluster) -> None:
    def pause(donor: CNode) -> None:
        donor.raw.pause()  # every process of its host frozen, its sockets open

    def unpause(donor: CNode) -> None:
        donor.raw.unpause()

    assert_stall(*fault_run(cluster, pause, unpause))


# -- soak: SSTs in a row while the donor takes writes -----------------------------------------

SOAK_SSTS = 10
SOAK_METHODS = ("py_rsync", "py_mariabackup", "py_rsync_wan")
WRITER = "/run/galera/soak-writer.py"


@contextmanager
def container_writer(node: CNode, run: str) -> Iterator[Callable[[], tuple[int, list[str]]]]:
    """integration/soak_writer.py writing into node for the duration; yields a function that
    stops it and returns (statements sent, the client's error lines). The writer is stopped
    in any case, and must be gone afterwards."""
    with open(os.path.join(os.path.dirname(__file__), "soak_writer.py"), "rb") as f:
        node.put(WRITER, f.read())
    files = {k: f"/run/galera/soak-{run}.{k}" for k in ("stop", "err", "count")}
    node.exec(["rm", "-f", *files.values()])
    node.sql(
        "CREATE DATABASE IF NOT EXISTS writeload; CREATE TABLE IF NOT EXISTS writeload.writes "
        "(id BIGINT AUTO_INCREMENT PRIMARY KEY, run VARCHAR(32), seq INT, t DATETIME(6), "
        "pad VARCHAR(200)) ENGINE=InnoDB"
    )
    argv = ["python3", WRITER, SOCKET, run, files["stop"], files["err"], files["count"]]
    node.raw.exec_run(argv, detach=True)

    def stop() -> tuple[int, list[str]]:
        node.exec(["touch", files["stop"]])
        wait_for(
            lambda: node.exec(["test", "-s", files["count"]], check=False) == "", 120, "writer"
        )
        sent, rc = node.exec(["cat", files["count"]]).split()
        errors = node.exec(["cat", files["err"]]).splitlines()
        assert rc == "0" or errors, f"the writer's client exited {rc}"
        return int(sent), errors

    try:
        yield stop
    finally:
        node.exec(["touch", files["stop"]], check=False)
        wait_for(lambda: "soak-writer" not in node.exec(["ps", "-eo", "args="]), 120, "writer")


def test_soak_ten_ssts_in_a_row_under_writes(engine: Engine) -> None:
    """A three-node cluster whose node1 takes an INSERT every 50 ms throughout, while node2
    and node3 are forced through a full SST from node1 ten times in a row, the method
    alternating between rsync, mariabackup and rsync_wan (VERIFY_IDENTITY): every join has
    equal data and no ERROR line and leaves nothing running (join()); the writer saw no
    error, every statement it sent is a row on all three nodes, and their data is equal."""
    with verified_cluster(engine, SOAK_METHODS[0]) as c:
        node1, node2, node3 = c.nodes
        join(node1, node2)
        join(node1, node3)
        with container_writer(node1, "soak") as stop_writer:
            for i in range(SOAK_SSTS):
                joiner = (node2, node3)[i % 2]
                joiner.sst_method = SOAK_METHODS[i % len(SOAK_METHODS)]
                rejoin_by_sst(node1, joiner)
                assert joiner.status_file() is not None
                ran_ours(joiner, "joiner")
            sent, errors = stop_writer()
        assert errors == [], errors[:5]
        assert sent > SOAK_SSTS
        count = "SELECT COUNT(*) FROM writeload.writes WHERE run = 'soak'"
        wait_for(lambda: {n.sql(count).strip() for n in c.nodes} == {str(sent)}, 60, "every row")
        expected = checksums(node1, ["app", "writeload"])
        for n in (node2, node3):
            assert checksums(n, ["app", "writeload"]) == expected, n.name
            nothing_left(n)
        nothing_left(node1)
