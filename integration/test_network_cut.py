"""The network between donor and joiner cut mid-transfer: the joiner runs in a network
namespace of its own, joined to the donor by a veth pair, and the test sets the link down.

Both sides must give up within sst-idle-timeout (a dead TCP peer would otherwise keep a send
blocked for many minutes), leave nothing running, and the joiner keeps its previous data;
with the link up again, the retry joins. The donor has pc.weight=2 so that it keeps quorum
while the joiner is cut off. Traffic stays on the namespace this test made (docs/testing.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from testsupport import lab as labmod
from testsupport.cluster import (
    OURS,
    gave_up,
    joiner_failure,
    make_seeded,
    nothing_left,
    previous_data_intact,
    receiving,
    retry,
    snapshot,
    sst_errors,
    wait_for,
)
from testsupport.lab import Lab, Node


@dataclass(frozen=True)
class Link:
    """A veth pair from this namespace (host_if, host_ip) into ns (ns_ip)."""

    ns: str
    host_if: str
    host_ip: str
    ns_ip: str

    def set(self, state: str) -> None:
        subprocess.run(["ip", "link", "set", self.host_if, state], check=True)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


QUICK_EVS = "evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S"


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    tag = f"{os.getpid() % 100000}"
    lk = Link(f"gsst-{tag}", f"gsst{tag}h", "10.213.77.1", "10.213.77.2")
    ip("netns", "add", lk.ns)
    try:
        ip("link", "add", lk.host_if, "type", "veth", "peer", "name", "gsstns0", "netns", lk.ns)
        ip("addr", "add", f"{lk.host_ip}/30", "dev", lk.host_if)
        ip("link", "set", lk.host_if, "up")
        ip("-n", lk.ns, "addr", "add", f"{lk.ns_ip}/30", "dev", "gsstns0")
        ip("-n", lk.ns, "link", "set", "gsstns0", "up")
        ip("-n", lk.ns, "link", "set", "lo", "up")
        yield lk
    finally:
        subprocess.run(["ip", "link", "del", lk.host_if], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", lk.ns], check=False, capture_output=True)


@pytest.fixture(scope="module")
def netlab(link: Link) -> Iterator[tuple[Lab, Node, str]]:
    """A lab of its own: a donor on the host end of the link, and a seeded datadir."""
    lb = Lab()
    try:
        seeded = make_seeded(lb)
        donor = lb.add_node(ip=link.host_ip)
        lb.use_ours_under_stock_names(donor)  # mysqldump has no name of ours
        donor.provider_options = f"pc.weight=2;{QUICK_EVS}"
        lb.bootstrap(donor)
        labmod.load_data(donor, 3000, tables=6)
        yield lb, donor, seeded
    finally:
        lb.close(keep=bool(os.environ.get("GALERA_SST_KEEP")))


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_network_cut_mid_transfer(netlab: tuple[Lab, Node, str], link: Link, method: str) -> None:
    lb, donor, seeded = netlab
    joiner = lb.add_node(sst_method=OURS[method], ip=link.ns_ip, netns=link.ns)
    shutil.rmtree(joiner.datadir)
    shutil.copytree(seeded, joiner.datadir, symlinks=True)
    labmod.chown_tree(joiner.datadir, joiner.user)
    joiner.provider_options = QUICK_EVS
    idle = {"sst-idle-timeout": "8"}
    donor.sst_options = {"rlimit": "4m" if method == "rsync" else "10m", **idle}
    joiner.sst_options = dict(idle)
    try:
        before = snapshot(joiner.datadir)
        lb.configure()
        joiner.start()
        wait_for(lambda: receiving(joiner), 60, "data to arrive")
        link.set("down")
        try:
            gave_up(joiner, 90)
            code, why = joiner_failure(joiner)
            assert code == 32, why
            assert "no data" in why or "no progress" in why or "parent mysqld" in why, why
            nothing_left(lb, joiner)
            # The donor's side: its tools were writing into a dead connection; it gives up
            # on its own idle timeout and goes back to Synced.
            donor.wait_synced(90)
            nothing_left(lb, donor)
        finally:
            link.set("up")
        previous_data_intact(lb, joiner, before)
        retry(lb, donor, joiner)
    finally:
        lb.remove_node(joiner)


def test_network_cut_during_mysqldump(netlab: tuple[Lab, Node, str], link: Link) -> None:
    """mysqldump's donor streams into the joiner's server across the link; cut, its client
    blocks on a dead connection. The donor gives up on its idle timeout, naming the phase,
    leaves nothing running and stays Synced. The joiner's mariadbd, cut off when the donor
    reported the failure, never hears of it and keeps waiting (it has no deadline of its own
    for mysqldump; stock is the same, docs/findings.md): the retry is restarting it."""
    lb, donor, _ = netlab
    joiner = lb.add_node(sst_method="mysqldump", ip=link.ns_ip, netns=link.ns)
    lb.create_sst_user_offline(joiner)
    joiner.provider_options = QUICK_EVS
    donor.sst_options = {"rlimit": "200k", "sst-idle-timeout": "8"}
    log_at = len(donor.log_text())
    try:
        lb.configure()
        joiner.start()
        wait_for(lambda: receiving(donor), 60, "the dump to flow")
        link.set("down")
        t0 = time.monotonic()
        try:
            wait_for(lambda: sst_errors(donor, log_at), 60, "the donor's error line")
            assert time.monotonic() - t0 < 30, "the idle timeout is 8 s"
            lines = sst_errors(donor, log_at)
            assert len(lines) == 1, lines
            assert "no progress for 8 s" in lines[0], lines[0]
            assert "during dumping into the joiner" in lines[0], lines[0]
            nothing_left(lb, donor)
            donor.wait_synced(90)
        finally:
            link.set("up")
        joiner.kill()
        retry(lb, donor, joiner)
    finally:
        lb.remove_node(joiner)
        donor.sst_options = {}
