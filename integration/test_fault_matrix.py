"""The fault matrix on real nodes: per method, something breaks mid-transfer, and then

- the joiner gives up within the phase's deadline, with the errno of docs/contract.md 2.6;
- our script wrote exactly one ERROR line, naming the cause and the phase;
- no SST process and no listener is left on either node;
- the joiner's previous datadir (a database of its own, `mine`) is unchanged, and a server
  started on it finds its rows;
- once the fault is gone, a retry joins (Synced, equal checksums, no secret anywhere).

Every joiner starts from a copy of one seeded datadir; transfers are slowed with [sst] rlimit
so that "mid-transfer" is a moment the test can hit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psutil
import pytest

from sst import datadir, demo, status
from testsupport import lab as labmod
from testsupport.cluster import (
    OURS,
    gave_up,
    join,
    joiner_failure,
    make_seeded,
    nothing_left,
    ours_under_stock_names,
    previous_data_intact,
    receiving,
    retry,
    snapshot,
    sst_errors,
    standalone,
    wait_for,
)
from testsupport.lab import Lab, Node

# -- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(lab: Lab) -> str:
    """The shared lab's seeded datadir."""
    return make_seeded(lab)


def seeded_joiner(
    lab: Lab, seeded: str, method: str, mysqld_options: dict[str, str] | None = None
) -> Node:
    joiner = lab.add_node(sst_method=method, mysqld_options=mysqld_options)
    shutil.rmtree(joiner.datadir)
    shutil.copytree(seeded, joiner.datadir, symlinks=True)
    labmod.chown_tree(joiner.datadir, joiner.user)
    return joiner


def our_script(role: str, node: Node) -> psutil.Process | None:
    """Our running SST script for role on node, if any."""
    for p in psutil.process_iter():
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        if (
            len(cmd) > 3
            and "python" in cmd[0]
            and "wsrep_sst_" in cmd[1]
            and (role in cmd or (role == "donor" and "joiner" not in cmd))  # mysqldump: no --role
            and any(node.datadir in c or node.socket in c for c in cmd)
        ):
            return p
    return None


def failed_status(node: Node) -> str:
    """The error our script left in the status file (`galera-sst status` shows it): the one
    place a joiner's reason survives when its mariadbd, the reader of its log, is dead."""
    st = status.read(node.datadir)
    assert st is not None and st["state"] in ("failed", "interrupted"), st
    return str(st["error"])


def recovered(lab: Lab, donor: Node, joiner: Node, before: dict[str, tuple[int, int]]) -> None:
    """After a fault: nothing left on either side, the donor Synced, the joiner's previous
    data intact and startable, and the retry joins."""
    nothing_left(lab, joiner)
    donor.wait_synced(90)
    nothing_left(lab, donor)
    previous_data_intact(lab, joiner, before)
    retry(lab, donor, joiner)


def set_method(src: Node, joiner: Node, method: str, **sst: str) -> None:
    src.sst_options = {"rlimit": "4m" if "rsync" in method else "10m", **sst}
    joiner.sst_options = dict(sst)


def start_faulty(lab: Lab, joiner: Node) -> dict[str, tuple[int, int]]:
    before = snapshot(joiner.datadir)
    lab.configure()
    joiner.start()
    return before


def mid_transfer(
    lab: Lab, donor: Node, seeded: str, method: str
) -> tuple[Node, dict[str, tuple[int, int]]]:
    """A seeded joiner whose SST (slowed by rlimit) is receiving data; and its files before."""
    joiner = seeded_joiner(lab, seeded, OURS[method])
    set_method(donor, joiner, method)
    before = start_faulty(lab, joiner)
    wait_for(lambda: receiving(joiner), 60, "data to arrive")
    return joiner, before


# -- faults on either script ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_donor_script_killed(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner, before = mid_transfer(lab, donor, seeded, method)
    victim = our_script("donor", donor)
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    gave_up(joiner)
    code, why = joiner_failure(joiner)
    assert code == 32, why
    assert "during receiving" in why, why
    recovered(lab, donor, joiner, before)


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_joiner_script_killed(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner, before = mid_transfer(lab, donor, seeded, method)
    victim = our_script("joiner", joiner)
    assert victim is not None
    victim.send_signal(signal.SIGKILL)
    gave_up(joiner)
    # SIGKILL leaves no line of ours on the joiner; the donor explains its side once.
    assert sst_errors(joiner) == []
    wait_for(
        lambda: len(sst_errors(donor)) > 0 or donor.status("wsrep_local_state") == "4",
        60,
        "the donor to notice",
    )
    nothing_left(lab, joiner)
    donor.wait_synced(60)
    previous_data_intact(lab, joiner, before)
    retry(lab, donor, joiner)  # the debris (pid file, staging) is removed by this run


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_joiner_mariadbd_killed(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner, before = mid_transfer(lab, donor, seeded, method)
    assert joiner.proc is not None
    joiner.proc.send_signal(signal.SIGKILL)  # mariadbd only: our script must notice
    joiner.proc.wait()
    nothing_left(lab, joiner)
    code, why = joiner_failure(joiner)
    assert code == 32 and "parent mysqld process" in why and "terminated" in why, why
    donor.wait_synced(90)
    previous_data_intact(lab, joiner, before)
    retry(lab, donor, joiner)


def test_joiner_mariadbd_killed_during_mysqldump(lab: Lab, donor: Node) -> None:
    """mysqldump has no joiner script: the donor's dump must stop and clean up."""
    with ours_under_stock_names(lab) as src:
        joiner = mysqldump_joiner(lab, src)
        src.sst_options = {"rlimit": "200k"}  # the shared donor's dump takes several seconds
        lab.configure()
        joiner.start()
        wait_for(lambda: receiving(src), 90, "the dump to flow")
        assert joiner.proc is not None
        joiner.proc.send_signal(signal.SIGKILL)
        joiner.proc.wait()
        wait_for(lambda: len(sst_errors(src)) > 0, 60, "the donor's error line")
        nothing_left(lab, src)
        src.wait_synced(60)
        retry(lab, src, joiner)


@pytest.mark.parametrize("fault", ["script-killed", "stalled", "server-killed", "stale-pid"])
def test_mysqldump_donor_faults(lab: Lab, donor: Node, fault: str) -> None:
    """The mysqldump donor (ours under the stock name, on a second member): its script or its
    server killed mid-dump, or a stale pid file from a crashed run. A killed script is
    retried by mariadbd itself and the join completes; a killed server makes the joiner
    abort (its server loaded part of a dump: mysqldump replaces data in place, as stock
    does, so the retry reloads everything), nothing is left on the donor, and the retry
    joins."""
    with ours_under_stock_names(lab) as src:
        joiner = mysqldump_joiner(lab, src)
        if fault == "stale-pid":
            dead = subprocess.Popen(["true"])
            dead.wait()
            with open(os.path.join(src.datadir, datadir.SST_PID), "w", encoding="ascii") as f:
                f.write(f"{dead.pid}\n")
            join(lab, src, joiner)
            return
        src.sst_options = {"rlimit": "200k"}
        if fault == "stalled":
            src.sst_options["sst-idle-timeout"] = "5"
        lab.configure()
        joiner.start()
        wait_for(lambda: receiving(src), 90, "the dump to flow")
        if fault == "stalled":
            # The dump stops producing: ours gives up after sst-idle-timeout, kills it, and
            # mariadbd's own retry (a fresh dump) completes the join.
            script = our_script("donor", src)
            assert script is not None
            dump = [k for k in script.children(recursive=True) if "dump" in k.name()]
            assert dump, "mariadb-dump is not running"
            dump[0].send_signal(signal.SIGSTOP)
            wait_for(lambda: "no progress for 5 s" in src.log_text(), 60, "the stall to be seen")
            joiner.wait_synced()
            assert labmod.checksums(src) == labmod.checksums(joiner)
            nothing_left(lab, src)
            return
        if fault == "script-killed":
            victim = our_script("donor", src)
            assert victim is not None
            victim.send_signal(signal.SIGKILL)
            # mariadbd retries a failed mysqldump donor script (up to 3 tries): the next run
            # of ours finds the dead run's pid file stale, dumps again, and the join ends.
            joiner.wait_synced()
            assert "Try 1/3" in src.log_text()
            assert labmod.checksums(src) == labmod.checksums(joiner)
            nothing_left(lab, src)
            return
        else:
            assert src.proc is not None
            src.proc.send_signal(signal.SIGKILL)
            src.proc.wait()
        gave_up(joiner)
        nothing_left(lab, src)
        if fault == "server-killed":
            assert failed_status(src)  # our donor recorded why it stopped
            lab.remove_node(src)
        else:
            src.wait_synced(60)
        donor.wait_synced(60)
        with ours_under_stock_names(lab) as again:
            joiner.mysqld_options["wsrep_sst_donor"] = again.galera_name
            retry(lab, again, joiner)


def test_mysqldump_joiner_never_accepts(lab: Lab, donor: Node) -> None:
    """The joiner announces an SQL address where nothing listens: the donor's client gives
    up within its connect timeout, naming the address and the phase, each of mariadbd's
    tries leaves nothing behind, the joiner aborts, and with its real address the retry
    joins."""
    with ours_under_stock_names(lab) as src:
        joiner = mysqldump_joiner(lab, src)
        dead = labmod.free_port_block(joiner.ip, 1, start=61000, stop=64000)
        # The later line in my.cnf wins over the lab's own receive address.
        joiner.mysqld_options["wsrep_sst_receive_address"] = f"{joiner.ip}:{dead}"
        errors = failed_mysqldump(lab, joiner, src, 120)
        for e in errors:
            assert f"connecting to the joiner {joiner.ip}" in e, e
            assert "Can't connect" in e, e
        nothing_left(lab, src)
        src.wait_synced(60)
        del joiner.mysqld_options["wsrep_sst_receive_address"]
        retry(lab, src, joiner)


# -- the donor's server dies ---------------------------------------------------------------


def failed_mysqldump(lab: Lab, joiner: Node, src: Node, timeout: float) -> list[str]:
    """Start joiner, see it give up within timeout, and return the donor's ERROR lines:
    mariadbd tries the donor script up to three times, and each run explains itself once."""
    lab.configure()
    joiner.start()
    gave_up(joiner, timeout)
    errors = sst_errors(src)
    assert 1 <= len(errors) <= 3, errors
    return errors


def mysqldump_joiner(lab: Lab, src: Node) -> Node:
    """A fresh mysqldump joiner (with the SST account the donor logs in to) that picks src.
    Fresh: mysqldump loads into the running server and keeps databases the donor does not
    have, so a seeded one would not end equal to the donor."""
    joiner = lab.add_node(sst_method="mysqldump")
    lab.create_sst_user_offline(joiner)
    joiner.mysqld_options["wsrep_sst_donor"] = src.galera_name
    return joiner


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_donor_mariadbd_killed(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    victim = lab.add_node()
    lab.join(victim)
    joiner = seeded_joiner(
        lab, seeded, OURS[method], mysqld_options={"wsrep_sst_donor": victim.galera_name}
    )
    set_method(victim, joiner, method)
    before = start_faulty(lab, joiner)
    wait_for(lambda: receiving(joiner), 60, "data to arrive")
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    gave_up(joiner)
    nothing_left(lab, joiner, victim)  # our donor saw its mariadbd die, and stopped
    code, why = joiner_failure(joiner)
    assert code == 32, why
    # Whichever it saw first (its server gone, or the joiner's side closing), our donor
    # recorded why it stopped; nothing_left above proved it stopped.
    assert failed_status(victim)
    lab.remove_node(victim)
    donor.wait_synced(60)
    previous_data_intact(lab, joiner, before)
    joiner.mysqld_options.pop("wsrep_sst_donor")
    retry(lab, donor, joiner)


# -- the network: a stalled peer, a peer that never connects, a taken port --------------------


def stopped_tools(script: psutil.Process) -> list[psutil.Process]:
    """SIGSTOP every process under script (the data tools), leaving script itself running."""
    kids = script.children(recursive=True)
    for k in kids:
        k.send_signal(signal.SIGSTOP)
    return kids


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_donor_stalls_after_some_data(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner = seeded_joiner(lab, seeded, OURS[method])
    set_method(donor, joiner, method)
    joiner.sst_options["sst-idle-timeout"] = "5"  # the joiner's watch, not the donor's
    before = start_faulty(lab, joiner)
    wait_for(lambda: receiving(joiner), 60, "data to arrive")
    script = our_script("donor", donor)
    assert script is not None
    frozen = stopped_tools(script)
    t0 = time.monotonic()
    try:
        gave_up(joiner, 60)
    finally:
        for k in frozen:
            with suppress(psutil.Error):
                k.send_signal(signal.SIGCONT)
    assert time.monotonic() - t0 < 30, "the idle timeout is 5 s"
    code, why = joiner_failure(joiner)
    assert code == 32, why
    assert "sst-idle-timeout" in why or "no progress for 5 s" in why, why
    recovered(lab, donor, joiner, before)


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_donor_never_connects(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner = seeded_joiner(lab, seeded, OURS[method])
    set_method(donor, joiner, method)
    joiner.sst_options["sst-initial-timeout"] = "5"
    before = start_faulty(lab, joiner)
    held: list[psutil.Process] = []

    def hold_donor() -> bool:
        p = our_script("donor", donor)
        if p is not None:
            p.send_signal(signal.SIGSTOP)
            held.append(p)
        return bool(held)

    wait_for(hold_donor, 60, "the donor's script")
    try:
        gave_up(joiner, 60)
    finally:
        held[0].send_signal(signal.SIGCONT)
    code, why = joiner_failure(joiner)
    assert code == 32 and "5 s" in why, why
    recovered(lab, donor, joiner, before)


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_sst_port_taken(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner = seeded_joiner(lab, seeded, OURS[method])
    set_method(donor, joiner, method)
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((joiner.ip, joiner.ports["sst"]))
    squatter.listen(1)
    try:
        before = start_faulty(lab, joiner)
        gave_up(joiner, 60)
    finally:
        squatter.close()
    code, why = joiner_failure(joiner)
    assert code == 16, why
    assert f"SST port {joiner.ports['sst']}" in why and "already in use" in why, why
    nothing_left(lab, joiner)
    donor.wait_synced(60)
    previous_data_intact(lab, joiner, before)
    retry(lab, donor, joiner)


# -- the joiner's disk fills up --------------------------------------------------------------


@contextmanager
def small_filesystem(node: Node, size_mb: int) -> Iterator[None]:
    """The node's directory on a tmpfs of size_mb MiB (its files moved onto it)."""
    aside = node.directory + ".aside"
    os.rename(node.directory, aside)
    os.makedirs(node.directory)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", node.directory],
        check=True,
    )
    try:
        for name in os.listdir(aside):
            shutil.move(os.path.join(aside, name), os.path.join(node.directory, name))
        os.rmdir(aside)
        labmod.chown_tree(node.directory, node.user)  # a copy across filesystems is root's
        yield
    finally:
        node.stop()
        for name in ("error.log", "mariadbd.out"):  # the evidence outlives the unmount
            with suppress(OSError):
                shutil.copyfile(os.path.join(node.directory, name), f"{node.directory}.{name}")
        subprocess.run(["umount", "-l", node.directory], check=False)


def grow(node: Node, size_mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_mb}m", node.directory], check=True)


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_joiner_disk_full(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner = seeded_joiner(lab, seeded, OURS[method])
    used = demo.datadir_bytes(joiner.datadir) // 2**20
    with small_filesystem(joiner, used + 60):  # the old copy fits; a second one does not
        set_method(donor, joiner, method, staging="always")  # auto would go in place
        donor.sst_options = {}
        before = start_faulty(lab, joiner)
        gave_up(joiner, 120)
        code, why = joiner_failure(joiner)
        assert code == 28, why
        assert "full" in why or "space" in why, why
        nothing_left(lab, joiner)
        donor.wait_synced(60)
        previous_data_intact(lab, joiner, before)
        grow(joiner, used * 3 + 400)
        retry(lab, donor, joiner)


def test_joiner_disk_full_during_mysqldump(lab: Lab, donor: Node) -> None:
    """mysqldump loads into the joiner's running server: when its disk fills, that server
    refuses the rows (InnoDB logs "failed with error 28"; the client only hears "Got error 1
    during COMMIT"), the donor stops, naming the phase and pointing to the joiner's error
    log; the joiner aborts, nothing is left on the donor, and with room again the retry
    joins. (The joiner's old data is not kept: mysqldump replaces it in place, as stock.)"""
    with ours_under_stock_names(lab) as src:
        joiner = mysqldump_joiner(lab, src)
        # What a start claims besides the data, kept small: the temporary tablespace and
        # Galera's ring buffer; and the template's redo log is resized once, here.
        joiner.mysqld_options["innodb_temp_data_file_path"] = "ibtmp1:1M:autoextend"
        joiner.mysqld_options["innodb_autoextend_increment"] = "1"
        joiner.provider_options = "gcache.size=2M"
        with standalone(lab, joiner):
            pass
        used = demo.datadir_bytes(joiner.directory) // 2**20
        with small_filesystem(joiner, used + 10):  # a few MiB for the rows: the dump needs more
            errors = failed_mysqldump(lab, joiner, src, 180)
            for e in errors:
                assert "during dumping into the joiner" in e, e
                assert "mariadb (joiner) exited" in e and "its error log" in e, e
            # The joiner's server knows the cause, and says it where the donor points.
            assert "failed with error 28" in joiner.log_text()
            nothing_left(lab, src)
            src.wait_synced(60)
            grow(joiner, used * 3 + 200)
            retry(lab, src, joiner)


# -- debris of a crashed run does not block the next one --------------------------------------


@pytest.mark.parametrize("method", ["rsync", "rsync_wan", "mariabackup"])
def test_stale_files_from_a_crashed_run(lab: Lab, donor: Node, seeded: str, method: str) -> None:
    joiner = seeded_joiner(lab, seeded, OURS[method])
    dead = subprocess.Popen(["true"])
    dead.wait()
    for d, names in (
        (joiner.datadir, (datadir.SST_PID, "stunnel.pid", "rsync_sst.pid")),
        (donor.datadir, (datadir.SST_PID,)),
    ):
        for name in names:
            with open(os.path.join(d, name), "w", encoding="ascii") as f:
                f.write(f"{dead.pid}\n")
    with open(os.path.join(joiner.datadir, datadir.IN_PROGRESS), "w", encoding="ascii") as f:
        f.write("")
    os.makedirs(os.path.join(joiner.datadir, datadir.STAGING, "junk"))
    labmod.chown_tree(joiner.datadir, joiner.user)
    set_method(donor, joiner, method)
    donor.sst_options = {}
    join(lab, donor, joiner)
