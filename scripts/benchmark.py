#!/usr/bin/env python3
"""Side-by-side SST benchmark: stock scripts against galera-sst on the same donor and data.

Loads a donor with --gib GiB of InnoDB data, then for each case joins a fresh node with the
stock method and with ours, alternately, --runs times each, and prints per case the median
join time (joiner start to Synced), the ratio ours/stock, the CPU seconds the SST used on each
side (every process under the donor's and the joiner's mariadbd, sampled through /proc), the
share of that CPU and the peak RSS of our own Python processes, next to the machine's limits
for the same datadir: a plain `tar | tar` copy, and `openssl speed` for the tunnel's cipher.

A second donor in the same cluster runs our scripts under the stock names, so the mysqldump
case (which mariadbd runs only by its stock name, on the donor) compares the two as well; the
joiner picks its donor with wsrep_sst_donor. Run as root after scripts/setup.sh:

    /opt/galera-sst/bin/python scripts/benchmark.py            # 2 GiB, 3 runs, every case
    /opt/galera-sst/bin/python scripts/benchmark.py --gib 1 --cases rsync,mariabackup

With --load, every case also joins once per run with a writer on the donor (one INSERT every
20 ms through testsupport/writer.py, from before the joiner starts until it is Synced) and
prints, for stock and ours side by side, the donor's longest single write, the total time
writes were blocked (commits over 0.1 s) or refused, and the join time under load next to
the idle join's:

    /opt/galera-sst/bin/python scripts/benchmark.py --gib 1 --load --cases rsync,mariabackup

This is a measurement, not a test: it asserts nothing and always prints what it saw.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

# The test harness is not installed (the wheel ships sst/ only): take it from this checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sst import demo, staging, status
from testsupport import lab as labmod
from testsupport import writer as wr
from testsupport.cluster import datadir_on_tmpfs
from testsupport.lab import Lab, Node

CASES = {
    # name: (stock method, our method, ssl-mode); "mysqldump" is ours on the second donor.
    "rsync": ("rsync", "py_rsync", "DISABLED"),
    "rsync-tls": ("rsync", "py_rsync", "VERIFY_CA"),
    "rsync-wan": ("rsync_wan", "py_rsync_wan", "DISABLED"),
    "mariabackup": ("mariabackup", "py_mariabackup", "DISABLED"),
    "mariabackup-tls": ("mariabackup", "py_mariabackup", "VERIFY_CA"),
    "mysqldump": ("mysqldump", "mysqldump", "DISABLED"),
}
TLS_CIPHER = "aes-256-gcm"  # what TLS 1.3 negotiates by default for socat and stunnel


@dataclass
class Run:
    """One join: wall time, CPU seconds per side, and our Python processes' share."""

    seconds: float
    donor_cpu: float
    joiner_cpu: float
    python_cpu: float
    python_rss: int  # bytes, peak of any one of our Python processes
    longest_write: float = 0.0  # under load: the donor's longest commit, seconds
    blocked: float = 0.0  # under load: commits over 0.1 s plus refused time, seconds
    write_errors: int = 0  # under load: failed writes


@dataclass
class Result:
    """Runs of one case, per implementation (idle, and under load with --load)."""

    stock: list[Run] = field(default_factory=list)
    ours: list[Run] = field(default_factory=list)
    stock_load: list[Run] = field(default_factory=list)
    ours_load: list[Run] = field(default_factory=list)


class Sampler(threading.Thread):
    """Every period, the CPU time of each process under the nodes' mariadbd, by side.

    A process's last sample counts, so one that lives shorter than a period is missed (a
    few milliseconds each); mariadbd's own CPU is not counted. Peak RSS is the kernel's
    high-water mark (VmHWM) of each of our Python processes, so nothing between samples
    is lost there.
    """

    def __init__(self, sides: dict[str, Node], period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self._sides = sides
        self._period = period
        self._halt = threading.Event()
        self.cpu: dict[tuple[int, float], tuple[str, float, bool]] = {}
        self.python_rss = 0

    def _sample(self) -> None:
        for side, node in self._sides.items():
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                kids = psutil.Process(node.proc.pid).children(recursive=True)
            except psutil.Error:
                continue
            for k in kids:
                try:
                    with k.oneshot():
                        t = k.cpu_times()
                        cmd = k.cmdline()
                        key = (k.pid, k.create_time())
                except psutil.Error:
                    continue
                python = len(cmd) > 1 and "python" in cmd[0] and "wsrep_sst_" in cmd[1]
                self.cpu[key] = (side, t.user + t.system, python)
                if python:
                    self.python_rss = max(self.python_rss, _vm_hwm(k.pid))

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self._period)

    def finish(self) -> tuple[float, float, float, int]:
        """Stop; (donor CPU s, joiner CPU s, Python CPU s, peak Python RSS bytes)."""
        self._halt.set()
        self.join(timeout=10)
        donor = sum(c for side, c, _ in self.cpu.values() if side == "donor")
        joiner = sum(c for side, c, _ in self.cpu.values() if side == "joiner")
        python = sum(c for _, c, py in self.cpu.values() if py)
        return donor, joiner, python, self.python_rss


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cipher_seconds(size: int) -> tuple[float, float]:
    """openssl speed for the tunnel's cipher on one core: (GB/s, seconds for size bytes)."""
    res = subprocess.run(
        ["openssl", "speed", "-evp", TLS_CIPHER, "-bytes", "65536", "-seconds", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    last = [ln for ln in res.stdout.splitlines() if ln.strip()][-1]
    rate = float(last.split()[-1].rstrip("k")) * 1000  # bytes per second
    return rate / 1e9, size / rate


def load(donor: Node, gib: float) -> None:
    """About gib GiB of InnoDB data in 16 tables (rows of ~1 KiB)."""
    rows = int(gib * 2**30 / 16 / 1100)
    stmts = ["CREATE DATABASE IF NOT EXISTS bench"]
    for t in range(16):
        stmts.append(
            f"CREATE TABLE bench.t{t} (id INT PRIMARY KEY, a CHAR(200), b BLOB) ENGINE=InnoDB"
        )
        stmts.append(
            f"INSERT INTO bench.t{t} SELECT seq, MD5(seq), RANDOM_BYTES(800) "
            f"FROM bench.seq_1_to_{rows}"
        )
    for s in stmts:
        donor.sql(s, timeout=3600)


# What no SST method copies: Galera's own cache (ring buffer and overflow pages).
NOT_COPIED = ("galera.cache", "gcache.page.*")


def settle(donor: Node, timeout: float = 300) -> None:
    """Let InnoDB purge and write back what the load left, so the copies compare quiet files."""
    donor.write_back(timeout)
    subprocess.run(["sync"], check=True)


def copied_bytes(datadir: str) -> int:
    """The datadir's size without what no method copies."""
    skip = 0
    for pattern in NOT_COPIED:
        for path in glob.glob(os.path.join(datadir, pattern)):
            skip += os.path.getsize(path)
    return demo.datadir_bytes(datadir) - skip


def tar_copy_seconds(src: str, scratch: str) -> float:
    """The machine's limit: copy the datadir with tar | tar (and sync)."""
    dst = os.path.join(scratch, "tarcopy")
    os.makedirs(dst)
    excludes = " ".join(f"--exclude='./{p}'" for p in NOT_COPIED)
    t0 = time.monotonic()
    subprocess.run(
        f"tar -C '{src}' {excludes} -cf - . | tar -C '{dst}' -xf - && sync", shell=True, check=True
    )
    took = time.monotonic() - t0
    shutil.rmtree(dst)
    return took


STAMP = re.compile(r"^WSREP_SST: \[\w+\] (.*) \((\d{8} \d\d:\d\d:\d\d\.\d{3})\)$")


def timeline(log_text: str) -> str:
    """`+1.2s text` per WSREP_SST line of our joiner: where the time went."""
    out = []
    first = None
    for line in log_text.splitlines():
        m = STAMP.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(2), "%Y%m%d %H:%M:%S.%f")
        first = first or t
        out.append(f"      +{(t - first).total_seconds():5.1f}s {m.group(1)[:110]}")
    return "\n".join(out)


def sst_seconds(log_text: str) -> float:
    """Seconds from our joiner's first WSREP_SST line to its last in log_text (one SST): the
    SST script's own time, without mariadbd's start and Galera's state exchange before it,
    nor InnoDB's start and Galera's sync after it; 0.0 when there is no such line."""
    stamps = [
        datetime.datetime.strptime(m.group(2), "%Y%m%d %H:%M:%S.%f")
        for m in map(STAMP.match, log_text.splitlines())
        if m
    ]
    return (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0


def caught_up(donor: Node, joiner: Node) -> None:
    """Wait until the joiner has applied every write the cluster committed (a causal read:
    wsrep_sync_wait), then raise LabError if its data differs from the donor's."""
    joiner.sql(
        f"SET SESSION wsrep_sync_wait = 1; SELECT COUNT(*) FROM {wr.DATABASE}.{wr.TABLE}",
        timeout=600,
    )
    dbs = ["bench", wr.DATABASE]
    if labmod.checksums(donor, dbs) != labmod.checksums(joiner, dbs):
        raise labmod.LabError(f"{joiner.sst_method}: data differs after the join")


def join_once(
    lb: Lab,
    donor: Node,
    certs: labmod.CertPaths,
    method: str,
    mode: str,
    *,
    verify: bool = True,
    verbose: bool = False,
    load: bool = False,
) -> Run:
    """One fresh joiner through method from donor; its time to Synced and CPU use. verify:
    compare CHECKSUM TABLE of every table (about a minute at 2 GiB, outside the timing).
    load: a writer on the donor from before the joiner starts until it is Synced."""
    extra = {"sst-log-archive-dir": "", "sst-log-archive": "0"}
    joiner = lb.add_node(sst_method=method, mysqld_options={"wsrep_sst_donor": donor.galera_name})
    if method == "mysqldump":
        lb.create_sst_user_offline(joiner)
    joiner.sst_options = {**labmod.tls_options(certs, joiner.name, mode), **extra}
    donor.sst_options = {**labmod.tls_options(certs, donor.name, mode), **extra}
    writer = wr.Writer(wr.Target(socket=donor.socket), run=f"{method}-{joiner.name}", seconds=3600)
    sampler = Sampler({"donor": donor, "joiner": joiner})
    sampler.start()
    try:
        if load:
            writer.start()
            time.sleep(1.0)  # a steady cadence before the joiner asks for its state
        took = lb.join(joiner, timeout=1800)
        stats = writer.stop() if load else wr.Stats()
        dcpu, jcpu, pcpu, rss = sampler.finish()
        donor.wait_synced(300)
        if verify:
            caught_up(donor, joiner)
        if verbose:
            print(timeline(joiner.log_text()), flush=True)
        return Run(
            took, dcpu, jcpu, pcpu, rss, stats.longest, stats.blocked_seconds(), len(stats.errors)
        )
    finally:
        if writer.is_alive():
            writer.stop()
        sampler.finish()
        lb.remove_node(joiner)


def median(runs: list[Run], what: str) -> float:
    return float(statistics.median(getattr(r, what) for r in runs))


def report(results: dict[str, Result], runs: int, size: int, limit: float, tls: float) -> str:
    """The table, as Markdown (readable as text, pasteable into docs/performance.md)."""
    head = (
        "| case | stock s | ours s | ours/stock | ours/tar | stock CPU s (donor+joiner) "
        "| ours CPU s (donor+joiner) | our Python CPU | our Python peak RSS |"
    )
    lines = [head, "|" + "---|" * 9]
    for case, r in results.items():
        if not r.stock or not r.ours:
            continue
        ms, mo = median(r.stock, "seconds"), median(r.ours, "seconds")
        sd, sj = median(r.stock, "donor_cpu"), median(r.stock, "joiner_cpu")
        od, oj = median(r.ours, "donor_cpu"), median(r.ours, "joiner_cpu")
        share = median(r.ours, "python_cpu") / max(od + oj, 1e-9)
        rss = max(x.python_rss for x in r.ours) / 2**20
        lines.append(
            f"| {case} | {ms:.1f} | {mo:.1f} | {mo / ms:.2f} | {mo / limit:.2f} "
            f"| {sd:.1f} + {sj:.1f} | {od:.1f} + {oj:.1f} | {share:.1%} | {rss:.0f} MiB |"
        )
    lines.append("")
    lines.append(
        f"Medians of {runs} joins per implementation; datadir {size / 2**30:.2f} GiB; "
        f"{os.cpu_count()} CPUs; `tar | tar` + sync {limit:.1f} s; "
        f"{TLS_CIPHER} on one core {tls:.2f} s for the datadir."
    )
    return "\n".join(lines)


def load_report(results: dict[str, Result], runs: int, size: int) -> str:
    """The under-load table, stock and ours side by side, as Markdown."""
    head = (
        "| case | longest write s stock | ours | blocked or refused s stock | ours "
        "| join under load s stock (x idle) | ours (x idle) | write errors stock/ours |"
    )
    lines = [head, "|" + "---|" * 8]
    for case, r in results.items():
        if not (r.stock and r.ours and r.stock_load and r.ours_load):
            continue
        cells = [
            f"{median(runs, what):.2f} (max {max(getattr(x, what) for x in runs):.2f})"
            for what in ("longest_write", "blocked")
            for runs in (r.stock_load, r.ours_load)
        ]
        for load, idle in ((r.stock_load, r.stock), (r.ours_load, r.ours)):
            ml, mi = median(load, "seconds"), median(idle, "seconds")
            cells.append(f"{ml:.1f} ({ml / mi:.2f}x)")
        errs = [sum(x.write_errors for x in runs) for runs in (r.stock_load, r.ours_load)]
        errors = f"{errs[0]}/{errs[1]}"
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {errors} |")
    lines.append("")
    lines.append(
        f"Medians (and maxima) of {runs} joins per implementation with one INSERT every 20 ms on "
        f"the donor; datadir {size / 2**30:.2f} GiB; {os.cpu_count()} CPUs; idle joins of the "
        "same run for the ratio."
    )
    return "\n".join(lines)


def run_case(
    lb: Lab,
    *,
    donor: Node,
    ours_donor: Node | None,
    certs: labmod.CertPaths,
    case: str,
    ns: argparse.Namespace,
) -> Result:
    """Every run of one case: stock and ours alternately, idle and (with --load) loaded."""
    stock, ours, mode = CASES[case]
    r = Result()
    loads = (False, True) if ns.load else (False,)
    for i in range(ns.runs):
        for load in loads:
            for impl, method in (("stock", stock), ("ours", ours)):
                src = ours_donor if impl == "ours" and ours_donor and method == stock else donor
                run = join_once(
                    lb,
                    src,
                    certs,
                    method,
                    mode,
                    verify=ns.verify == "all" or i == 0,
                    verbose=ns.timeline and impl == "ours",
                    load=load,
                )
                runs = {
                    ("stock", False): r.stock,
                    ("ours", False): r.ours,
                    ("stock", True): r.stock_load,
                    ("ours", True): r.ours_load,
                }[(impl, load)]
                runs.append(run)
                loaded = (
                    f"  longest write {run.longest_write:5.2f} s blocked {run.blocked:5.2f} s "
                    f"errors {run.write_errors}"
                    if load
                    else ""
                )
                # without --load, each run's line is as before
                kind = ("load " if load else "idle ") if ns.load else ""
                print(
                    f"  {case:16} run {i + 1} {impl:5} {method:15} {kind}"
                    f"{run.seconds:6.1f} s  cpu donor {run.donor_cpu:5.1f} s joiner "
                    f"{run.joiner_cpu:5.1f} s{loaded}",
                    flush=True,
                )
    return r


# ---------------------------------------------------------------------------------------
# Scale cases (issue 15): a stale rejoin and a resumed transfer, ours only (py_rsync), each
# against a full SST into a fresh node in the same run. Not the CASES table's stock/ours pairs.
# ---------------------------------------------------------------------------------------

RECEIVED = re.compile(r"Received: \d+ file\(s\) of [0-9.]+ MiB arrived, ([0-9.]+) MiB")


def wire_mib(node: Node) -> float:
    """MiB over the wire in the joiner's last `Received:` line (0 when there is none)."""
    found = RECEIVED.findall(node.log_text())
    return float(found[-1]) if found else 0.0


def small_gcache(lb: Lab, donor: Node) -> None:
    """Restart the donor with a 16 MiB gcache in 16 MiB pages: the writes of the stale case
    are past IST."""
    if "gcache.size" in donor.provider_options:
        return
    donor.provider_options = ";".join(
        x for x in (donor.provider_options, "gcache.size=16M;gcache.page_size=16M") if x
    )
    lb.configure()
    donor.stop()
    donor.start(new_cluster=True)
    donor.wait_synced(600)


def full_join(lb: Lab, donor: Node, method: str = "py_rsync") -> tuple[Node, float, float]:
    """A fresh joiner of method (py_rsync): the node, seconds to Synced, MiB over the wire."""
    donor.sst_method = method
    donor.sst_options = {"sst-log-archive": "0"}
    joiner = lb.add_node(sst_method=method, mysqld_options={"wsrep_sst_donor": donor.galera_name})
    joiner.sst_options = {"sst-log-archive": "0"}
    took = lb.join(joiner, timeout=1800)
    donor.wait_synced(300)
    return joiner, took, wire_mib(joiner)


def stale_case(lb: Lab, donor: Node, method: str = "py_rsync") -> str:
    """A member stopped, one table of the 16 rewritten (past the gcache), the rejoin (an SST
    onto the old files) against the full SST that made it a member; py_rsync sends the
    changed files whole, py_rsync_wan (the stale-wan case) as deltas."""
    small_gcache(lb, donor)
    joiner, full_s, full_mib = full_join(lb, donor, method)
    try:
        joiner.stop()
        rows = int(donor.sql("SELECT MAX(id) FROM bench.t3").strip() or 0)
        for lo in range(0, rows, 10000):
            donor.sql(
                f"UPDATE bench.t3 SET a = MD5(id + 1) WHERE id > {lo} AND id <= {lo + 10000}",
                timeout=600,
            )
        settle(donor)
        at, d_at = len(joiner.log_text()), len(donor.log_text())
        stale_s = lb.join(joiner, timeout=1800)
        donor.wait_synced(300)
        stale_mib = wire_mib(joiner)
        full_sst, stale_sst = (
            sst_seconds(joiner.log_text()[:at]),
            sst_seconds(joiner.log_text()[at:]),
        )
        print(f"    full SST:\n{timeline(joiner.log_text()[:at])}", flush=True)
        print(f"    stale rejoin:\n{timeline(joiner.log_text()[at:])}", flush=True)
        print(f"    its donor:\n{timeline(donor.log_text()[d_at:])}", flush=True)
        if "IST requested by the donor" in joiner.log_text()[at:]:
            return f"stale rejoin: an IST ({stale_s:.1f} s), not an SST: gcache too large"
        same = labmod.checksums(donor, ["bench"]) == labmod.checksums(joiner, ["bench"])
    finally:
        lb.remove_node(joiner)
    return (
        f"stale rejoin ({method}): full SST {full_s:.1f} s, {full_mib:.0f} MiB on the wire; "
        "stale rejoin "
        f"{stale_s:.1f} s ({stale_s / full_s:.2f}x), {stale_mib:.0f} MiB "
        f"({stale_mib / max(full_mib, 1e-9):.2f}x); the joiner's SST script {full_sst:.1f} s "
        f"and {stale_sst:.1f} s ({stale_sst / max(full_sst, 1e-9):.2f}x); data equal: {same}"
    )


def staged_bytes(datadir: str) -> int:
    """Bytes in the rsync joiner's staging so far."""
    return demo.datadir_bytes(os.path.join(datadir, ".sst-staging"))


def resume_case(lb: Lab, donor: Node, fraction: float = 0.7) -> str:
    """A fresh joiner whose donor dies at about fraction of the data; the retry's time and
    bytes against a full SST."""
    size = copied_bytes(donor.datadir)
    first, full_s, full_mib = full_join(lb, donor)
    lb.remove_node(first)
    joiner = lb.add_node(
        sst_method="py_rsync", mysqld_options={"wsrep_sst_donor": donor.galera_name}
    )
    try:
        lb.configure()
        joiner.start()
        deadline = time.monotonic() + 1800
        while staged_bytes(joiner.datadir) < fraction * size and time.monotonic() < deadline:
            time.sleep(0.1)
        arrived = staged_bytes(joiner.datadir)
        assert donor.proc is not None
        for c in psutil.Process(donor.proc.pid).children(recursive=True):
            try:
                if any("wsrep_sst_" in a for a in c.cmdline()[:2]):
                    for v in [c, *c.children(recursive=True)]:
                        v.kill()
            except psutil.Error:
                continue
        joiner.wait_exit(300)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the joiner's script keeps what arrived
            st = status.read(joiner.datadir)
            if st is not None and st["state"] != "running":
                break
            time.sleep(0.2)
        joiner.stop()
        donor.wait_synced(300)
        open(joiner.error_log, "w").close()
        retry_s = lb.join(joiner, timeout=1800)
        donor.wait_synced(300)
        retry_mib = wire_mib(joiner)
        same = labmod.checksums(donor, ["bench"]) == labmod.checksums(joiner, ["bench"])
    finally:
        lb.remove_node(joiner)
    return (
        f"resume: full SST {full_s:.1f} s, {full_mib:.0f} MiB; donor killed at "
        f"{arrived / size:.0%} arrived; retry {retry_s:.1f} s, {retry_mib:.0f} MiB "
        f"({retry_mib / max(full_mib, 1e-9):.2f}x); data equal: {same}"
    )


# The joiner's tmpfs against the donor's datadir in the tight-disk case (issue 15).
TIGHT_RATIO = 1.4
DECISION = re.compile(r"Staging the incoming copy: .*|SST in place: .*?(?=; the old datadir)")


def tight_join(lb: Lab, donor: Node, method: str) -> str:
    """One method's tight-disk join: a node that joined once through method, stopped, its
    grastate.dat invalidated (as after an outage past the gcache: a full SST), its datadir
    moved onto a tmpfs of TIGHT_RATIO times the donor's datadir; one line: joined or not,
    the time, the joiner's staging decision, data equal."""
    donor.sst_method = method
    donor.sst_options = {"sst-log-archive": "0"}
    joiner = lb.add_node(sst_method=method, mysqld_options={"wsrep_sst_donor": donor.galera_name})
    joiner.sst_options = {"sst-log-archive": "0"}
    d_at = len(donor.log_text())
    try:
        try:
            lb.join(joiner, timeout=1800)
        except labmod.LabError as exc:
            print(f"    {method}: the first join failed: {exc}", flush=True)
            print(f"    its donor:\n{timeline(donor.log_text()[d_at:])}", flush=True)
            return f"{method}: the first join (a full SST onto an empty node) failed"
        donor.wait_synced(300)
        joiner.stop()
        staging.invalidate_grastate(joiner.datadir)
        labmod.chown_tree(joiner.datadir, joiner.user)
        size = int(TIGHT_RATIO * demo.datadir_bytes(donor.datadir))
        with datadir_on_tmpfs(joiner, size) as fs:
            open(joiner.error_log, "w").close()
            try:
                took, joined = lb.join(joiner, timeout=1800), True
                donor.wait_synced(300)
            except labmod.LabError as exc:
                took, joined = 0.0, False
                print(f"    {method}: the join failed: {exc}", flush=True)
                print(f"    its donor:\n{timeline(donor.log_text()[d_at:])}", flush=True)
            text = joiner.log_text()
            decision = DECISION.search(text)
            same = joined and labmod.checksums(donor, ["bench"]) == labmod.checksums(
                joiner, ["bench"]
            )
            if joined:
                print(f"    {method} tight-disk join:\n{timeline(text)}", flush=True)
    finally:
        lb.remove_node(joiner)
    return (
        f"{method}: tmpfs {fs} ({TIGHT_RATIO}x the donor's datadir); "
        f"{'joined in ' + format(took, '.1f') + ' s' if joined else 'did not join'}; "
        f"{decision.group(0) if decision else 'no staging decision logged'}; data equal: {same}"
    )


def tight_case(lb: Lab, donor: Node) -> str:
    """Tight disk: for py_rsync and py_mariabackup, a full SST into a tmpfs that holds the
    old copy but not a second one (tight_join)."""
    return "\n  ".join(
        f"tight disk, {tight_join(lb, donor, m)}" for m in ("py_rsync", "py_mariabackup")
    )


def stale_wan_case(lb: Lab, donor: Node) -> str:
    """The stale case with py_rsync_wan: changed files as deltas."""
    return stale_case(lb, donor, "py_rsync_wan")


SCALE_CASES = {
    "stale": stale_case,
    "stale-wan": stale_wan_case,
    "resume": resume_case,
    "tight": tight_case,
}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gib", type=float, default=2.0, help="data on the donor (default 2)")
    p.add_argument("--runs", type=int, default=3, help="joins per implementation and case")
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help="comma-separated: " + ",".join([*CASES, *SCALE_CASES]),
    )
    p.add_argument("--base", default="", help="where node directories go (default /var/tmp)")
    p.add_argument("--timeline", action="store_true", help="print our joiner's phases per run")
    p.add_argument(
        "--verify",
        choices=["first", "all"],
        default="first",
        help="compare checksums after the first join of each case and implementation (default)"
        " or after every join",
    )
    p.add_argument(
        "--load",
        action="store_true",
        help="also join with a writer on the donor and print its stalls (see above)",
    )
    ns = p.parse_args()
    if os.geteuid() != 0:
        print("benchmark.py must run as root", file=sys.stderr)
        return 1
    # SIGTERM (and SIGINT, even when a shell started us with it ignored) stops the nodes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    lb = Lab(ns.base)
    try:
        certs = labmod.make_certs(
            os.path.join(lb.base, "certs"), {f"node{i}": f"127.0.0.{i}" for i in range(1, 60)}
        )
        mysqld = {"innodb_buffer_pool_size": "512M"}
        donor = lb.add_node(mysqld_options=dict(mysqld))
        lb.bootstrap(donor)
        t0 = time.monotonic()
        load(donor, ns.gib)
        settle(donor)
        size = copied_bytes(donor.datadir)
        print(
            f"donor loaded in {time.monotonic() - t0:.0f} s: datadir {size / 2**30:.2f} GiB, "
            f"{os.cpu_count()} CPUs, {datetime.date.today()}",
            flush=True,
        )
        limit = tar_copy_seconds(donor.datadir, lb.base)
        print(f"machine limit (tar | tar + sync of the datadir): {limit:.1f} s", flush=True)
        gbps, tls = cipher_seconds(size)
        print(f"openssl speed {TLS_CIPHER}: {gbps:.2f} GB/s on one core", flush=True)
        cases = ns.cases.split(",")
        ours_donor = None
        if "mysqldump" in cases:
            ours_donor = lb.add_node(mysqld_options=dict(mysqld))
            lb.use_ours_under_stock_names(ours_donor)
            took = lb.join(ours_donor, timeout=1800)
            print(f"second donor (ours under the stock names) joined in {took:.1f} s", flush=True)
        wr.create_table(donor.sql)  # replicated to the second donor
        results: dict[str, Result] = {}
        for case in cases:
            if case in SCALE_CASES:
                print(f"  {SCALE_CASES[case](lb, donor)}", flush=True)
                continue
            results[case] = run_case(
                lb, donor=donor, ours_donor=ours_donor, certs=certs, case=case, ns=ns
            )
        print()
        print(report(results, ns.runs, size, limit, tls))
        if ns.load:
            print()
            print("Under write load:")
            print()
            print(load_report(results, ns.runs, size))
        return 0
    finally:
        lb.close()


if __name__ == "__main__":
    sys.exit(main())
