#!/usr/bin/env python3
"""Side-by-side SST benchmark: stock scripts against galera-sst on the same donor and data.

Loads a donor with --gib GiB of InnoDB data, then for each case joins a fresh node with the
stock method and with ours, alternately, --runs times each, and prints per case the median
join time (joiner start to Synced), the ratio ours/stock, and the machine's limit for the
same datadir (a plain `tar | tar` copy). Run as root after scripts/setup.sh:

    /opt/galera-sst/bin/python scripts/benchmark.py --gib 1 --runs 3

This is a measurement, not a test: it asserts nothing and always prints what it saw.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from sst import lab as labmod
from sst.lab import Lab, Node

CASES = {
    # name: (stock method, our method, ssl-mode)
    "mariabackup": ("mariabackup", "py_mariabackup", "DISABLED"),
    "mariabackup-tls": ("mariabackup", "py_mariabackup", "VERIFY_CA"),
    "rsync": ("rsync", "py_rsync", "DISABLED"),
    "rsync-tls": ("rsync", "py_rsync", "VERIFY_CA"),
}


@dataclass
class Result:
    """Join times of one case, per implementation."""

    stock: list[float]
    ours: list[float]


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


def tar_copy_seconds(src: str, scratch: str) -> float:
    """The machine's limit: copy the datadir with tar | tar (and sync)."""
    dst = os.path.join(scratch, "tarcopy")
    os.makedirs(dst)
    t0 = time.monotonic()
    subprocess.run(f"tar -C '{src}' -cf - . | tar -C '{dst}' -xf - && sync", shell=True, check=True)
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
        out.append(f"      +{(t - first).total_seconds():5.1f}s {m.group(1)[:70]}")
    return "\n".join(out)


def join_once(
    lb: Lab, donor: Node, certs: labmod.CertPaths, method: str, mode: str, *, verbose: bool = False
) -> float:
    """One fresh joiner through method; seconds from start to Synced."""
    extra = {"sst-log-archive-dir": "", "sst-log-archive": "0"}
    joiner = lb.add_node(sst_method=method)
    joiner.sst_options = {**labmod.tls_options(certs, joiner.name, mode), **extra}
    donor.sst_options = {**labmod.tls_options(certs, donor.name, mode), **extra}
    donor.sst_method = method
    try:
        took = lb.join(joiner, timeout=1800)
        donor.wait_synced(300)
        a, b = labmod.checksums(donor, ["bench"]), labmod.checksums(joiner, ["bench"])
        if a != b:
            raise labmod.LabError(f"{method}: data differs after the join")
        if verbose:
            print(timeline(joiner.log_text()), flush=True)
        return took
    finally:
        lb.remove_node(joiner)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gib", type=float, default=2.0, help="data on the donor (default 2)")
    p.add_argument("--runs", type=int, default=3, help="joins per implementation and case")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ",".join(CASES))
    p.add_argument("--base", default="", help="where node directories go (default /var/tmp)")
    p.add_argument("--timeline", action="store_true", help="print our joiner's phases per run")
    ns = p.parse_args()
    if os.geteuid() != 0:
        print("benchmark.py must run as root", file=sys.stderr)
        return 1
    lb = Lab(ns.base)
    try:
        certs = labmod.make_certs(
            os.path.join(lb.base, "certs"), {f"node{i}": f"127.0.0.{i}" for i in range(1, 60)}
        )
        donor = lb.add_node(mysqld_options={"innodb_buffer_pool_size": "512M"})
        lb.bootstrap(donor)
        t0 = time.monotonic()
        load(donor, ns.gib)
        size = labmod.datadir_bytes(donor.datadir)
        print(
            f"donor loaded in {time.monotonic() - t0:.0f} s: datadir {size / 2**30:.2f} GiB, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        limit = tar_copy_seconds(donor.datadir, lb.base)
        print(f"machine limit (tar | tar + sync of the datadir): {limit:.1f} s", flush=True)
        results: dict[str, Result] = {}
        for case in ns.cases.split(","):
            stock, ours, mode = CASES[case]
            r = results.setdefault(case, Result([], []))
            for i in range(ns.runs):
                for impl, method in (("stock", stock), ("ours", ours)):
                    took = join_once(
                        lb, donor, certs, method, mode, verbose=ns.timeline and impl == "ours"
                    )
                    (r.stock if impl == "stock" else r.ours).append(took)
                    print(f"  {case:16} run {i + 1} {impl:5} {method:15} {took:6.1f} s", flush=True)
        print()
        print(f"{'case':16} {'stock s':>8} {'ours s':>8} {'ours/stock':>10} {'ours/limit':>10}")
        for case, r in results.items():
            ms, mo = statistics.median(r.stock), statistics.median(r.ours)
            print(f"{case:16} {ms:8.1f} {mo:8.1f} {mo / ms:10.2f} {mo / limit:10.2f}")
        print(f"(medians of {ns.runs}; data {size / 2**30:.2f} GiB; limit {limit:.1f} s)")
        return 0
    finally:
        lb.close()


if __name__ == "__main__":
    sys.exit(main())
