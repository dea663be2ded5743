"""Faults on real nodes: a failed SST loses nothing, leaves nothing, and a retry works."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from integration.conftest import leftovers
from integration.test_rsync_cluster import assert_clean, join, sst_errors
from integration.test_rsync_failures import snapshot
from sst import net, status
from sst.lab import Lab, Node
from sst.process.pidfile import read_pid

pytestmark = pytest.mark.cluster


def our_script(role: str, node: Node) -> psutil.Process | None:
    """Our running SST script for role on node, if any."""
    for p in psutil.process_iter():
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if (
            len(cmd) > 3
            and "wsrep_sst_" in cmd[1]
            and role in cmd
            and any(node.datadir in c for c in cmd)
        ):
            return p
    return None


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_donor_script_killed_mid_transfer(lab: Lab, donor: Node) -> None:
    joiner = lab.add_node(sst_method="py_mariabackup")
    # The joiner first has data of its own, so "intact" means something.
    donor.sst_method = "py_rsync"
    donor.sst_options = {}
    joiner.sst_method = "py_rsync"
    join(lab, donor, joiner)
    joiner.stop()
    path = os.path.join(joiner.datadir, "grastate.dat")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace("seqno:   ", "seqno:   -1 #"))  # force a full SST next time
    before = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}

    donor.sst_method = joiner.sst_method = "py_mariabackup"
    donor.sst_options = {"rlimit": "15m"}  # about 10 s for the donor's data
    joiner.sst_options = {}
    log_at = len(donor.log_text())
    lab.configure()
    joiner.start()
    wait_for(lambda: "Receiving the backup" in joiner.log_text(), 60, "stage 2")
    time.sleep(1.5)
    victim = our_script("donor", donor)
    assert victim is not None, "the donor's SST script is not running"
    kids = [k.pid for k in victim.children(recursive=True)]
    victim.send_signal(signal.SIGKILL)

    assert joiner.wait_exit(120) not in (None, 0), "the joiner must give up"
    after = {k: v for k, v in snapshot(joiner.datadir).items() if not k.endswith(".log")}
    assert after == before, "the joiner's datadir changed"
    errors = sst_errors(joiner)
    assert len(errors) == 1, errors
    assert_clean(lab, joiner)
    donor.wait_synced(60)
    wait_for(
        lambda: (
            not any(
                psutil.pid_exists(k) and psutil.Process(k).status() != psutil.STATUS_ZOMBIE
                for k in kids
            )
        ),
        15,
        "the donor's children",
    )
    # SIGKILL runs no cleanup: the donor's pid file names a dead process, which the next
    # run recognises as stale (the retry below goes through the same donor).
    pid_file = os.path.join(donor.datadir, "wsrep_sst.pid")
    assert read_pid(pid_file) == victim.pid and not psutil.pid_exists(victim.pid)
    state = status.read(donor.datadir)
    assert state is not None and state["state"] == "interrupted"
    assert leftovers(lab.base) == []
    assert not net.port_in_use(joiner.ports["sst"], joiner.ip)
    assert "State transfer to" in donor.log_text()[log_at:]

    # The fault is gone: the retry joins.
    donor.sst_options = {}
    open(joiner.error_log, "w").close()
    join(lab, donor, joiner)
