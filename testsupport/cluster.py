"""Helpers of the local-cluster tier shared by its modules: joins and their checks, the
fault matrix's steps, polling, leftover processes (the fixtures stay in integration/conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psutil

from sst import datadir, demo, net, status
from testsupport import lab as labmod
from testsupport.lab import CertPaths, Lab, Node
from testsupport.leaks import watching


def reap(directory: str) -> None:
    """Kill (by PID) what a dead node's SST left running: a stock joiner script outlives a
    mariadbd that aborted, and must not fail every later test's leftovers() check."""
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if directory in " ".join(p.info["cmdline"] or []):
                p.kill()
        except psutil.Error:
            continue


def sst_port_open(node: Node) -> bool:
    """Something listens on the node's SST port (seen from inside its network namespace)."""
    if not node.netns:
        return net.port_in_use(node.ports["sst"], node.ip)
    res = subprocess.run(
        ["ip", "netns", "exec", node.netns, "ss", "-Hltn", f"sport = :{node.ports['sst']}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(res.stdout.strip())


def restart_alone(lab: Lab, donor: Node) -> None:
    """Restart the only member (it re-reads PATH at start) as a new cluster."""
    donor.stop()
    lab.configure()
    donor.start(new_cluster=True)
    donor.wait_synced()


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, *, period: float = 0.05
) -> None:
    """Poll predicate every period seconds until it is true, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def leftovers(base: str) -> list[str]:
    """SST processes (ours or the tools') still running for anything under base."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except psutil.Error:
            continue
        if base in cmd and "mariadbd" not in cmd.split(" ")[0]:
            out.append(f"{p.info['pid']}: {cmd[:200]}")
    return out


def sst_errors(node: Node, since: int = 0) -> list[str]:
    """The WSREP_SST ERROR lines in a node's log (from character `since` on)."""
    return [ln for ln in node.log_text()[since:].splitlines() if "WSREP_SST: [ERROR]" in ln]


def assert_clean(lab: Lab, node: Node) -> None:
    """No SST process left, no listener on the SST port, no marker or staging left."""
    deadline = time.monotonic() + 10
    while leftovers(lab.base) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(lab.base) == []
    assert not sst_port_open(node)
    names = set(os.listdir(node.datadir))
    for debris in datadir.TRANSIENT:
        assert debris not in names, f"{debris} left in {node.datadir}"


def set_tls(donor: Node, joiner: Node, certs: CertPaths, mode: str) -> None:
    """Give both nodes the [sst] TLS options for mode (the donor re-reads them per SST)."""
    donor.sst_options = labmod.tls_options(certs, donor.name, mode)
    joiner.sst_options = labmod.tls_options(certs, joiner.name, mode)


def join(
    lab: Lab,
    donor: Node,
    joiner: Node,
    *,
    expect_ours: bool = True,
    argv_secrets: tuple[str, ...] = (),
) -> None:
    """Join, then assert equal checksums, no SST error, no debris on either side, and no
    secret in any argv, child environment or log while our scripts ran (expect_ours: at
    least one of them did; False only for stock-to-stock). argv_secrets: more secrets
    watched for in our scripts' and their children's argv and environment only (a stock
    peer may log them, as stock's encrypt=1 logs its `-k KEY`)."""
    donor_log_at = len(donor.log_text())
    with watching(labmod.SST_PASSWORD) as watch:
        watch.secrets.update(argv_secrets)
        lab.join(joiner)
        donor.wait_synced(60)
    watch.secrets.difference_update(argv_secrets)
    watch.scan_text("the joiner's error log", joiner.log_text())
    watch.scan_text("the donor's error log", donor.log_text()[donor_log_at:])
    for node in (donor, joiner):  # what the SST left behind (its tmpdir is in there)
        watch.scan_files(node.directory, skip=(node.cnf, node.error_log))
    if expect_ours:
        assert watch.scripts_seen >= 1, "none of our SST scripts was seen running"
    assert watch.hits == []
    a, b = labmod.checksums(donor), labmod.checksums(joiner)
    assert len(a) >= 6
    assert a == b
    assert sst_errors(joiner) == []
    assert_clean(lab, joiner)
    assert_clean(lab, donor)


VOLATILE = {"galera.cache", "grastate.dat", "gvwstate.dat", "galera_sst_status.json"}


def snapshot(datadir: str) -> dict[str, tuple[int, int]]:
    """Every file under datadir with size and mtime, minus what Galera itself rewrites."""
    out = {}
    for root, _, files in os.walk(datadir):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), datadir)
            if rel in VOLATILE:
                continue
            st = os.lstat(os.path.join(root, f))
            out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def write_pair(lab: Lab, name: str, cert_key: tuple[object, object]) -> tuple[str, str]:
    """Write a generated (cert, key) into the lab's certs dir, readable by mysql."""
    cert, key = cert_key
    d = os.path.join(lab.base, "certs")
    c, k = os.path.join(d, f"{name}-cert.pem"), os.path.join(d, f"{name}-key.pem")
    demo.write_file(c, labmod.pem_cert(cert))  # type: ignore[arg-type]
    demo.write_file(k, labmod.pem_key(key), 0o600)  # type: ignore[arg-type]
    labmod.chown(k, "mysql")
    return c, k


def failed_join(lab: Lab, joiner: Node) -> None:
    """Start a joiner that must give up: mariadbd exits, and the SST leaves nothing."""
    before = snapshot(joiner.datadir)
    lab.configure()
    joiner.start()
    rc = joiner.wait_exit(120)
    assert rc is not None and rc != 0, "the joiner should have aborted"
    assert_clean(lab, joiner)
    assert snapshot(joiner.datadir) == before, "the joiner's datadir was changed"


def legacy_pem(lab: Lab, certs: CertPaths, name: str) -> str:
    """encrypt=2 wants one PEM with the certificate and its key (tcert)."""
    cert, key = certs.certs[name]
    path = os.path.join(os.path.dirname(cert), f"{name}-combined.pem")
    with open(path, "wb") as out:
        for p in (cert, key):
            with open(p, "rb") as f:
                out.write(f.read())
    os.chmod(path, 0o640)
    labmod.chown(path, "mysql")
    return path


def starts_standalone(node: Node) -> str:
    """Start the node without Galera on its current datadir; return a marker row."""
    saved = dict(node.mysqld_options)
    node.mysqld_options = {**saved, "wsrep_provider": "none", "wsrep_on": "OFF"}
    node.write_cnf([node])
    node.start()
    try:
        for _ in range(100):
            if os.path.exists(node.socket):
                try:
                    return node.sql("SELECT v FROM lab.t0 WHERE id=1").strip()
                except labmod.LabError:
                    pass
            time.sleep(0.3)
        raise AssertionError("the node did not start on its old datadir\n" + node.log_tail())
    finally:
        node.stop()
        node.mysqld_options = saved


SEED_ROWS = 37


OURS = {"rsync": "py_rsync", "rsync_wan": "py_rsync_wan", "mariabackup": "py_mariabackup"}


RECEIVING = ("receiving", "receiving the backup")


COMPLETED = re.compile(r"Process completed with error: wsrep_sst_\S+ --role 'joiner'.*: (\d+) \(")


@contextmanager
def standalone(lab: Lab, node: Node) -> Iterator[Node]:
    """node's mariadbd without Galera, for seeding and for proving a datadir still starts."""
    saved = dict(node.mysqld_options)
    node.mysqld_options.update({"wsrep_on": "OFF", "wsrep_provider": "none"})
    node.write_cnf(lab.nodes)
    node.start()
    try:

        def ready() -> bool:
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{node.name} did not start:\n{node.log_tail(30)}")
            try:
                node.sql("SELECT 1", timeout=5)
            except labmod.LabError:
                return False
            return True

        wait_for(ready, 60, f"{node.name} to accept connections")
        yield node
    finally:
        node.stop()
        node.mysqld_options = saved


def make_seeded(lab: Lab) -> str:
    """A datadir with a database of its own (mine.t, SEED_ROWS rows), made by a standalone
    server of lab; joiners start from copies of it."""
    node = lab.add_node()
    with standalone(lab, node):
        node.sql(
            "CREATE DATABASE mine; CREATE TABLE mine.t (id INT PRIMARY KEY) ENGINE=InnoDB;"
            f"INSERT INTO mine.t SELECT seq FROM mine.seq_1_to_{SEED_ROWS}"
        )
    path = os.path.join(lab.base, "seeded-datadir")
    shutil.copytree(node.datadir, path, symlinks=True)
    lab.remove_node(node)
    return path


def receiving(node: Node) -> bool:
    """The node's SST status file says data is arriving (or, on a donor, leaving)."""
    st = status.read(node.datadir)
    return bool(
        st
        and st["state"] == "running"
        and (st["phase"] in RECEIVING or st["phase"].startswith(("sending", "dumping")))
        and st["bytes_done"] > 0
    )


def previous_data_intact(lab: Lab, joiner: Node, before: dict[str, tuple[int, int]]) -> None:
    """The seeded datadir is as it was, and a server started on it finds its rows."""
    after = snapshot(joiner.datadir)
    # A SIGKILLed script cannot clean up; its debris is the next run's to remove. What a
    # failed rsync transfer kept for the next one to resume from (README, "Stale joiners
    # and resume") is kept on purpose, private to the node's user.
    changed = {
        k
        for k in set(before) | set(after)
        if before.get(k) != after.get(k)
        and k.split("/")[0] not in (*datadir.TRANSIENT, datadir.KEPT)
    }
    assert changed == set(), f"the joiner's datadir changed: {sorted(changed)[:10]}"
    kept = os.path.join(joiner.datadir, datadir.KEPT)
    if os.path.lexists(kept):
        assert os.lstat(kept).st_mode & 0o7777 == 0o700, oct(os.lstat(kept).st_mode)
    with standalone(lab, joiner):
        assert joiner.sql("SELECT COUNT(*) FROM mine.t").strip() == str(SEED_ROWS)


def nothing_left(lab: Lab, *nodes: Node) -> None:
    wait_for(lambda: leftovers(lab.base) == [], 20, f"no SST process ({leftovers(lab.base)})")
    for n in nodes:
        assert not sst_port_open(n), f"{n.name}'s SST port is still open"


def joiner_exit_code(joiner: Node) -> int | None:
    """Our joiner script's exit status as mariadbd logged it."""
    m = COMPLETED.search(joiner.log_text())
    return int(m.group(1)) if m else None


def joiner_failure(joiner: Node) -> tuple[int, str]:
    """Our joiner script's exit status and its one-line reason with the phase.

    When the donor side fails, Galera aborts the joiner's mariadbd at once ("Will never
    receive state"); the script's ERROR line then has no reader, and the status file
    (`galera-sst status`) is where the reason is kept. Otherwise it is in the error log.
    """
    wait_for(
        lambda: (st := status.read(joiner.datadir)) is not None and st["state"] != "running",
        30,
        "the joiner's script to finish",
    )
    st = status.read(joiner.datadir)
    assert st is not None and st["state"] == "failed", st
    errors = sst_errors(joiner)
    assert len(errors) <= 1, errors
    if errors:
        assert f", during {st['phase']}" in errors[0], (errors[0], st["phase"])
        logged = joiner_exit_code(joiner)
        assert logged in (None, st["exit_code"])
        return int(st["exit_code"]), errors[0]
    return int(st["exit_code"]), f"{st['error']} (during {st['phase']})"


def retry(lab: Lab, src: Node, joiner: Node) -> None:
    """The fault is gone: the same joiner joins."""
    joiner.sst_options = {}
    src.sst_options = {}
    open(joiner.error_log, "w").close()
    join(lab, src, joiner)


def gave_up(joiner: Node, timeout: float = 120) -> None:
    rc = joiner.wait_exit(timeout)
    assert rc is not None, f"the joiner did not give up within {timeout:.0f} s"
    assert rc != 0


@contextmanager
def ours_under_stock_names(lab: Lab) -> Iterator[Node]:
    """A second member that runs our scripts under the stock names (for mysqldump)."""
    node = lab.add_node()
    lab.use_ours_under_stock_names(node)
    lab.join(node)
    try:
        yield node
    finally:
        if node in lab.nodes:
            lab.remove_node(node)


# Log lines only one implementation writes, per method and role.
OURS_ONLY = {
    ("mariabackup", "joiner"): "Moved the prepared backup into",
    ("mariabackup", "donor"): "Streaming the backup to the joiner at",
    ("rsync", "joiner"): "Swapped ",
    ("rsync", "donor"): "database directories)",
}


STOCK_ONLY = {
    ("mariabackup", "joiner"): "Waiting for SST streaming to complete!",
    ("mariabackup", "donor"): "Sleeping before data transfer for SST",
    ("rsync", "joiner"): "Joiner cleanup done.",
    ("rsync", "donor"): "Transfer of InnoDB data files done",
}


def galera_sst(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `galera-sst` command; returns its result."""
    return subprocess.run(
        ["galera-sst", *args], capture_output=True, text=True, check=False, timeout=120
    )


@contextmanager
def datadir_on_tmpfs(node: Node, size: int) -> Iterator[str]:
    """node's datadir (the node stopped) moved onto a tmpfs of size bytes (whole MiB);
    yields the size as text. Afterwards the node is stopped and the tmpfs unmounted (its
    contents are gone), whatever happened; raises LabError if it stays mounted."""
    mb = -(-size // 2**20)
    aside = node.datadir + ".aside"
    os.rename(node.datadir, aside)
    os.makedirs(node.datadir)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0750", "tmpfs", node.datadir],
            check=True,
        )
        for name in os.listdir(aside):
            shutil.move(os.path.join(aside, name), os.path.join(node.datadir, name))
        os.rmdir(aside)
        labmod.chown_tree(node.datadir, node.user)
        yield f"{mb} MiB"
    finally:
        node.stop()
        subprocess.run(["umount", node.datadir], check=False)
        if os.path.ismount(node.datadir):
            subprocess.run(["umount", "-l", node.datadir], check=False)
        if os.path.ismount(node.datadir):
            raise labmod.LabError(f"{node.datadir} is still mounted")
